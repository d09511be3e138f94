/**
 * Loaded before every test file (bunfig.toml). Tests start real sshd, dnsmasq and HTTP servers and
 * spawn the compiled binary: on a loaded 2-core machine Bun's 5 s default fails them at random.
 */
import { setDefaultTimeout } from "bun:test";

setDefaultTimeout(60_000);
