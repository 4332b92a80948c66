/** `weft serve [--config FILE] [--print-config]`: run the server (or print its effective config). */
import { Command } from '@commander-js/extra-typings';
import { formatConfig, loadConfig } from '../../config/index.ts';
import { createLogger } from '../../observe/logger.ts';
import { serveUntilSignal } from '../../server/server.ts';

export function serveCommand(
  globalConfigFile: (command: Command<unknown[], Record<string, unknown>>) => string | undefined,
): Command {
  return new Command('serve')
    .description('run the weft server')
    .option('--print-config', 'print the effective configuration (secrets redacted) and exit', false)
    .action(async (options, command) => {
      const config = loadConfig({ file: globalConfigFile(command), env: process.env });
      if (options.printConfig) {
        process.stdout.write(formatConfig(config));
        return;
      }
      const log = createLogger({ level: config.log.level, format: config.log.format });
      await serveUntilSignal(config, log);
    });
}
