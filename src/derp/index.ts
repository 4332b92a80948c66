export { DerpClient, type DerpClientEvents, type DerpClientOptions } from './client.ts';
export { DerpError, type DerpErrorCode } from './errors.ts';
export { DERP_PATH, DerpUpgradeHandler, unmapAddress } from './http.ts';
export { MeshLink, type MeshLinkOptions } from './mesh.ts';
export { type AdmitClient, DerpServer, type DerpServerOptions, type DerpStats } from './server.ts';
export * from './wire.ts';
