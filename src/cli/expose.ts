import { defineCommand } from "citty";
import { HOST_NAME } from "../core/expose-run.ts";
import { InputError } from "../lib/errors.ts";
import { needed } from "./_args.ts";
import { runStages } from "./_run.ts";
import { globalArgs, nonEmpty } from "./_shared.ts";

/** A namespace name: an RFC 1123 label (k8s.io/apimachinery IsDNS1123Label). */
const LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
/**
 * A Service name: an RFC 1035 label, which begins with a letter (kubernetes pkg/apis/core/validation
 * ValidateServiceName is NameIsDNS1035Label): the Service's DNS name must not look like an address.
 */
const SERVICE_NAME = /^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/;
/** A Service port's name: IANA_SVC_NAME (k8s.io/apimachinery IsValidPortName): 1-15, a letter, no "--". */
const PORT_NAME = /^(?=.{1,15}$)(?=.*[a-z])[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** The port as a number (1-65535) or a name; undefined when it is neither. */
function parsePort(text: string): number | string | undefined {
  if (/^\d+$/.test(text)) {
    const n = Number(text);
    return n >= 1 && n <= 65535 ? n : undefined;
  }
  return PORT_NAME.test(text) && !text.includes("--") ? text : undefined;
}

export default defineCommand({
  meta: {
    name: "expose",
    description:
      "Make the Ingress for an existing Service and walk the path to it from the host, naming the first broken hop",
  },
  args: {
    ...globalArgs,
    service: needed({
      type: "positional",
      // Checked below with the other flags, so that every problem is named at once.
      required: false,
      description: "The Service to expose",
      valueHint: "SERVICE",
    }),
    host: needed({
      type: "string",
      description: "The name clients use (it must resolve to the ingress's address)",
      valueHint: "NAME",
    }),
    port: {
      type: "string",
      description: "The Service port, by number or name (default: its only port)",
      valueHint: "PORT",
    },
    namespace: {
      type: "string",
      alias: "n",
      description: "The Service's namespace (default: default)",
      valueHint: "NAMESPACE",
    },
    "dry-run": { type: "boolean", description: "Say what would be made; make and walk nothing" },
  },
  run: ({ args }) => {
    const service = String(args.service ?? "");
    const namespace = nonEmpty(args.namespace, "--namespace") ?? "default";
    const host = nonEmpty(args.host, "--host");
    const port = nonEmpty(args.port, "--port");
    const problems: { path: string; message: string }[] = [];
    if (!service) problems.push({ path: "SERVICE", message: "the Service to expose is needed" });
    else if (!SERVICE_NAME.test(service))
      problems.push({ path: "SERVICE", message: `${JSON.stringify(service)} is not a Service name` });
    if (!LABEL.test(namespace))
      problems.push({ path: "--namespace", message: `${JSON.stringify(namespace)} is not a namespace name` });
    if (host === undefined) problems.push({ path: "--host", message: "the name clients use is needed" });
    else if (!HOST_NAME.test(host))
      problems.push({
        path: "--host",
        message: `${JSON.stringify(host)} is not a DNS name an Ingress can carry (lowercase, at least two labels)`,
      });
    const portRef = port === undefined ? undefined : parsePort(port);
    if (port !== undefined && portRef === undefined)
      problems.push({
        path: "--port",
        message: `${JSON.stringify(port)} is neither a port number (1-65535) nor a port name`,
      });
    if (problems.length)
      throw new InputError(
        "kubehyve expose was given what it cannot use; nothing was done",
        "kubehyve expose --help",
        problems,
      );
    return runStages("expose", args, {
      expose: {
        app: {
          kind: "service",
          namespace,
          name: service,
          host: host!,
          ...(portRef === undefined ? {} : { port: portRef }),
        },
        dryRun: args["dry-run"],
      },
    });
  },
});
