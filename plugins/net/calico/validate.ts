/** Rules of the cluster file that only the net/calico stage knows, checked by `config validate`. */
import { type Cluster, type Diagnostic, diag, parseCidr } from "kubehyve";
import { type CalicoOptions, KNOWN_RELEASES, MANIFESTS, manifestSha256 } from "./options.ts";

export function validateStage({
  cluster,
  options,
}: {
  cluster: Cluster;
  options: CalicoOptions;
}): Diagnostic[] {
  const found: Diagnostic[] = [];
  for (const name of MANIFESTS) {
    if (manifestSha256(options, name)) continue;
    found.push(
      diag.error("calico.release-unpinned", `no sha256 is known for Calico ${options.version} ${name}`, {
        detail: `kubehyve knows the manifests of ${Object.keys(KNOWN_RELEASES).join(", ")}; another release is fetched only by the sha256 you give it`,
        hint: `sha256sum of https://raw.githubusercontent.com/projectcalico/calico/${options.version}/manifests/${name}, set as stages.net.sha256["${name}"]`,
        path: `stages.net.sha256.${name}`,
      }),
    );
  }
  const pods = parseCidr(cluster.network.podCidr);
  if (pods) {
    if (options.blockSize < pods.prefix) {
      found.push(
        diag.error(
          "calico.block-size",
          `Calico's address blocks (/${options.blockSize}) cannot be larger than the pod CIDR ${cluster.network.podCidr}`,
          {
            hint: `set stages.net.blockSize to ${Math.max(pods.prefix, 26)} or more`,
            path: "stages.net.blockSize",
          },
        ),
      );
    } else {
      const blocks = 2 ** (options.blockSize - pods.prefix);
      if (blocks < cluster.nodes.length)
        found.push(
          diag.error(
            "calico.block-size",
            `the pod CIDR ${cluster.network.podCidr} holds ${blocks} blocks of /${options.blockSize}, fewer than the ${cluster.nodes.length} nodes`,
            {
              hint: "use a larger network.podCidr or a larger stages.net.blockSize",
              path: "stages.net.blockSize",
            },
          ),
        );
    }
  }
  return found;
}
