/**
 * @kubernetes/client-node, a client nobody here wrote, pointed at the test server through a
 * KubeConfig (CA, client certificate and key inlined, as kubeadm writes admin.conf).
 *
 * client-node sends its requests with undici's fetch and passes the kubeconfig's TLS material as
 * an undici Agent (`dispatcher: new Agent({ connect: { ca, cert, key } })`, config.js
 * createDispatcher). Under Bun, `undici` is Bun's built-in stand-in, whose Agent keeps no options
 * and whose fetch ignores `dispatcher`, so client-node would present no certificate and trust no
 * CA. The shim below is only that missing link: an Agent that keeps its options and a fetch that
 * hands `connect` to Bun's fetch as its `tls` option. What client-node puts in them, and every
 * request it builds, is client-node's own.
 */
import { mock } from "bun:test";
import * as undici from "undici";

class Agent {
  constructor(readonly options: { connect?: Record<string, unknown> } = {}) {}
}

const bunFetch = globalThis.fetch;

mock.module("undici", () => ({
  ...undici,
  Agent,
  fetch: (input: string | URL | Request, init: RequestInit & { dispatcher?: unknown } = {}) => {
    const { dispatcher, ...rest } = init;
    const tls = dispatcher instanceof Agent ? dispatcher.options.connect : undefined;
    return bunFetch(input, tls ? ({ ...rest, tls } as RequestInit) : rest);
  },
}));

export type ClientNode = typeof import("@kubernetes/client-node");

/** client-node, loaded after the shim, and a KubeConfig of the given kubeconfig text. */
export async function clientNode(kubeconfig: string): Promise<{
  k8s: ClientNode;
  kc: InstanceType<ClientNode["KubeConfig"]>;
}> {
  const k8s = await import("@kubernetes/client-node");
  const kc = new k8s.KubeConfig();
  kc.loadFromString(kubeconfig);
  return { k8s, kc };
}
