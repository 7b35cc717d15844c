// The typed shapes of Skein's own cluster metadata (`filter_metadata.skein`) that both sides read or write.

/** Who a rule admits: every field present must match. Principals are full SPIFFE IDs or `*`; namespaces exact. */
export interface AuthzSource {
  readonly principals?: readonly string[];
  readonly namespaces?: readonly string[];
}

/** What a rule covers: every field present must match. Methods exact (upper-case), paths as prefixes. */
export interface AuthzOperation {
  readonly methods?: readonly string[];
  readonly paths?: readonly string[];
}
