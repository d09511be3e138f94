/**
 * YAML for Ansible. Ansible reads YAML 1.1 (PyYAML), where `yes`, `no`, `on`, `off` and `0755` are
 * not strings: writing in 1.1 mode makes the yaml library quote every string that would change
 * meaning there.
 */
import { stringifyYaml } from "kubehyve";

export function toYaml(data: unknown): string {
  return stringifyYaml(data, { version: "1.1" });
}
