// The server's ACL ([[server.acl]]): which nodes of a user may ask for a link to which. Pure: no I/O.
import { ACL_ANY, ACL_TAG_PREFIX, type ACL_ACTIONS } from "../config/index.ts";

export type AclAction = (typeof ACL_ACTIONS)[number];

export interface AclRule {
  /** Shown in messages with the rule's place in server.acl. */
  name?: string;
  user: string;
  from: readonly string[];
  to: readonly string[];
  action: AclAction;
}

/** The admin-set tags of a node of a user. */
export type TagsOf = (user: string, node: string) => readonly string[];
export const noTags: TagsOf = () => [];

export interface AclDecision {
  allowed: boolean;
  user: string;
  from: string;
  to: string;
  /** The rule that decided (its index in server.acl); null: the user has no rules (allowed), or none matched (denied). */
  rule: { index: number; name?: string } | null;
}

/**
 * A user without rules: every node may link to every other. A user with rules: the first rule whose
 * `from` matches the requester and whose `to` matches the peer decides; no match denies.
 */
export class Acl {
  private readonly byUser = new Map<string, { index: number; rule: AclRule }[]>();

  constructor(
    rules: readonly AclRule[] = [],
    private readonly tagsOf: TagsOf = noTags,
  ) {
    rules.forEach((rule, index) => {
      const list = this.byUser.get(rule.user) ?? [];
      list.push({ index, rule });
      this.byUser.set(rule.user, list);
    });
  }

  check(user: string, from: string, to: string): AclDecision {
    const rules = this.byUser.get(user);
    if (!rules) return { allowed: true, user, from, to, rule: null };
    for (const { index, rule } of rules) {
      if (!this.matches(rule.from, user, from) || !this.matches(rule.to, user, to)) continue;
      return { allowed: rule.action === "allow", user, from, to, rule: { index, ...(rule.name ? { name: rule.name } : {}) } };
    }
    return { allowed: false, user, from, to, rule: null };
  }

  private matches(selectors: readonly string[], user: string, node: string): boolean {
    let tags: readonly string[] | undefined; // asked for once, and only when a tag selector needs them
    for (const selector of selectors) {
      if (selector === ACL_ANY || selector === node) return true;
      if (!selector.startsWith(ACL_TAG_PREFIX)) continue;
      tags ??= this.tagsOf(user, node);
      if (tags.includes(selector.slice(ACL_TAG_PREFIX.length))) return true;
    }
    return false;
  }
}

/** A refusal in words, naming the rule, e.g. `the server's ACL denies alpha -> beta (rule server.acl[1] "cams-only")`. */
export function aclDenialMessage(decision: AclDecision): string {
  const { rule } = decision;
  const why = rule ? `rule server.acl[${rule.index}]${rule.name ? ` "${rule.name}"` : ""}` : `no rule of user ${decision.user} allows it`;
  return `the server's ACL denies ${decision.from} -> ${decision.to} (${why})`;
}
