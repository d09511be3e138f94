/**
 * Who is asking, and may they: the test server's users and a small RBAC-like authorizer.
 *   - The admin (client certificate CN=kubernetes-admin, O=system:masters, or the admin token) is
 *     in system:masters, which kube-apiserver's privileged-groups authorizer allows everything,
 *     with no reason given (k8s.io/apiserver pkg/authorization/authorizerfactory/builtin.go
 *     privilegedGroupAuthorizer).
 *   - A restricted user `kubehyve-viewer` (a bearer token, when the server is started with
 *     `viewerToken`) has the default ClusterRole `view` bound by a ClusterRoleBinding of that name:
 *     get, list and watch on everything but secrets; like every authenticated user it may create
 *     SelfSubjectAccessReviews (ClusterRole system:basic-user).
 * Bun.serve does not hand the peer certificate to the handler, so with client certificates every
 * request is the admin's; the restricted user exists in token mode.
 * A refusal is the 403 of responsewriters/errors.go ForbiddenStatusError (message shape of
 * status-403-forbidden-list-pods.kube-oidc-proxy-e2e-excerpt.json).
 */

export interface User {
  name: string;
  groups: string[];
}

export const ADMIN: User = { name: "kubernetes-admin", groups: ["system:masters", "system:authenticated"] };
export const VIEWER: User = { name: "kubehyve-viewer", groups: ["system:authenticated"] };

export interface Attributes {
  verb: string;
  group: string;
  resource: string;
  subresource?: string;
  namespace?: string;
  name?: string;
}

export interface Decision {
  allowed: boolean;
  reason: string;
}

const READ = new Set(["get", "list", "watch"]);

export function authorize(user: User, a: Attributes): Decision {
  if (user.groups.includes("system:masters")) return { allowed: true, reason: "" };
  if (
    a.group === "authorization.k8s.io" &&
    a.resource === "selfsubjectaccessreviews" &&
    a.verb === "create"
  ) {
    return {
      allowed: true,
      reason: `RBAC: allowed by ClusterRoleBinding "system:basic-user" of ClusterRole "system:basic-user" to Group "system:authenticated"`,
    };
  }
  if (
    user.name === VIEWER.name &&
    READ.has(a.verb) &&
    !(a.group === "" && a.resource === "secrets") &&
    !a.subresource
  ) {
    return {
      allowed: true,
      reason: `RBAC: allowed by ClusterRoleBinding "${VIEWER.name}" of ClusterRole "view" to User "${VIEWER.name}"`,
    };
  }
  return { allowed: false, reason: "" };
}

/** forbiddenMessage: `User "u" cannot VERB resource "R" in API group "G" in the namespace "N"`. */
export function forbiddenMessage(user: User, a: Attributes): string {
  const resource = a.subresource ? `${a.resource}/${a.subresource}` : a.resource;
  const where = a.namespace ? `in the namespace ${JSON.stringify(a.namespace)}` : "at the cluster scope";
  const qualified = a.group ? `${a.resource}.${a.group}` : a.resource;
  const subject = a.name ? `${qualified} ${JSON.stringify(a.name)}` : qualified;
  return `${subject} is forbidden: User ${JSON.stringify(user.name)} cannot ${a.verb} resource ${JSON.stringify(resource)} in API group ${JSON.stringify(a.group)} ${where}`;
}
