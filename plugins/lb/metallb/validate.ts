/** What validate() finds in the cluster file: the pools against the lab, and the release pin. */
import { type Cluster, type Diagnostic, diag } from "kubehyve";
import { validatePools } from "./addresses.ts";
import { KNOWN_RELEASES, type MetallbOptions, manifestSha256 } from "./options.ts";

export function validate({ cluster, options }: { cluster: Cluster; options: MetallbOptions }): Diagnostic[] {
  const found = validatePools(cluster, options);
  if (!manifestSha256(options))
    found.push(
      diag.error(
        "metallb.release-unpinned",
        `no sha256 is known for MetalLB ${options.version} metallb-native.yaml`,
        {
          detail: `kubehyve knows the manifest of ${Object.keys(KNOWN_RELEASES).join(", ")}`,
          hint: `sha256sum of https://raw.githubusercontent.com/metallb/metallb/${options.version}/config/manifests/metallb-native.yaml, set as stages.lb.sha256`,
          path: "stages.lb.sha256",
        },
      ),
    );
  return found;
}
