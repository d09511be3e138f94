/**
 * YAML for Ansible. Ansible reads YAML 1.1 (PyYAML), where `yes`, `no`, `on`, `off` and `0755` are
 * not strings: writing in 1.1 mode makes the yaml library quote every string that would change
 * meaning there.
 *
 * Ansible also templates every string of the inventory and the group vars when a task reads it, and
 * a template runs code on the machine that runs Ansible (`{{ lookup('pipe', …) }}`), as root. What
 * kubehyve writes there is data: every string that could hold a template (Jinja2's `{{`, `{%` and `{#`
 * all start with `{`) is tagged `!unsafe`, which Ansible never templates, on each element of a list
 * or map as Ansible's docs ask (playbooks_advanced_syntax, "Unsafe or raw strings"). A value that
 * another template reads stays unsafe there too.
 */
import { stringifyYaml } from "kubehyve";

/**
 * What PyYAML refuses in a stream even inside quotes (reader.py, NON_PRINTABLE), and the line breaks
 * of YAML 1.1 other than \n and \r (NEL, LS, PS), which a quoted scalar folds into a blank: such a
 * character is written as an escape, or Ansible stops on "unacceptable character" or reads another
 * string.
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: these are the characters it finds
const NOT_PRINTABLE = /[^\x09\x0a\x0d\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufffd\u{10000}-\u{10ffff}]/gu;

function needsCare(value: unknown): value is string {
  return (
    typeof value === "string" && (value.includes("{") || new RegExp(NOT_PRINTABLE.source, "u").test(value))
  );
}

/**
 * A double-quoted scalar: JSON's escapes are YAML's too (YAML 1.1 section 5.6), and what PyYAML
 * would refuse becomes a \u escape.
 */
function quoted(value: string): string {
  return JSON.stringify(value).replace(
    NOT_PRINTABLE,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/** The yaml library's custom tag: it takes the strings that need care before its own str tag does. */
const unsafeString = {
  tag: "!unsafe",
  identify: needsCare,
  resolve: (text: string) => text,
  stringify: (item: { value: unknown }) => quoted(String(item.value)),
};

export function toYaml(data: unknown): string {
  return stringifyYaml(data, {
    version: "1.1",
    customTags: (tags) => [unsafeString, ...tags],
  });
}
