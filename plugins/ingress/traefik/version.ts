/** The release this stage installs; apart from release.ts so that loading the plugin list costs nothing. */
export const TRAEFIK_VERSION = "v3.7.9";
