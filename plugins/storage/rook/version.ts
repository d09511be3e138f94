/** The release this stage installs; apart from release.ts so that loading the plugin list costs nothing. */
export const ROOK_VERSION = "v1.20.6";
