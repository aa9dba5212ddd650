// The server's ACL: which nodes of a user may link to which, rule by rule, first match wins.
import { describe, expect, it } from "vitest";
import { Acl, aclDenialMessage, type AclRule } from "../../src/server/acl.ts";

const rule = (fields: Partial<AclRule> & Pick<AclRule, "from" | "to" | "action">): AclRule => ({ user: "default", ...fields });

describe("Acl.check", () => {
  it("with no rules for a user, every node of that user may link to every other", () => {
    const acl = new Acl([rule({ user: "bob", from: ["x"], to: ["y"], action: "allow" })]);
    expect(acl.check("default", "alpha", "beta")).toEqual({ allowed: true, user: "default", from: "alpha", to: "beta", rule: null });
    expect(acl.check("bob", "y", "x").allowed).toBe(false); // bob has rules: no match denies
  });

  it("once a user has rules, what no rule allows is denied", () => {
    const acl = new Acl([rule({ from: ["alpha"], to: ["beta"], action: "allow" })]);
    expect(acl.check("default", "alpha", "beta").allowed).toBe(true);
    expect(acl.check("default", "beta", "alpha")).toEqual({ allowed: false, user: "default", from: "beta", to: "alpha", rule: null });
    expect(acl.check("default", "alpha", "gamma").allowed).toBe(false);
  });

  it("the first matching rule decides, and the decision names it by its place in server.acl", () => {
    const acl = new Acl([
      rule({ user: "bob", from: ["*"], to: ["*"], action: "allow" }),
      rule({ name: "no-cams-out", from: ["cam1"], to: ["*"], action: "deny" }),
      rule({ name: "everyone", from: ["*"], to: ["*"], action: "allow" }),
    ]);
    expect(acl.check("default", "cam1", "nvr")).toMatchObject({ allowed: false, rule: { index: 1, name: "no-cams-out" } });
    expect(acl.check("default", "nvr", "cam1")).toMatchObject({ allowed: true, rule: { index: 2, name: "everyone" } });
    expect(acl.check("bob", "cam1", "nvr")).toMatchObject({ allowed: true, rule: { index: 0 } });
  });

  it("matches tags through tagsOf, asking only for the nodes a tag selector needs", () => {
    const tags: Record<string, string[]> = { cam1: ["cams"], cam2: ["cams", "outdoor"], nvr: ["storage"] };
    const asked: string[] = [];
    const acl = new Acl([rule({ name: "cams-to-nvr", from: ["tag:cams"], to: ["nvr", "tag:storage"], action: "allow" })], (user, node) => {
      asked.push(`${user}/${node}`);
      return tags[node] ?? [];
    });
    expect(acl.check("default", "cam2", "nvr")).toMatchObject({ allowed: true, rule: { index: 0, name: "cams-to-nvr" } });
    expect(asked).toEqual(["default/cam2"]); // "nvr" matched by name: its tags were not needed
    expect(acl.check("default", "laptop", "nvr").allowed).toBe(false);
    expect(acl.check("default", "nvr", "cam1").allowed).toBe(false);
  });

  it("without a tagsOf callback no node has tags", () => {
    const acl = new Acl([rule({ from: ["tag:cams"], to: ["*"], action: "allow" })]);
    expect(acl.check("default", "cam1", "nvr").allowed).toBe(false);
  });

  it("a node name never matches a tag of the same name, nor a tag a node name", () => {
    const acl = new Acl([rule({ from: ["cams"], to: ["tag:nvr"], action: "allow" })], (_user, node) => (node === "cam1" ? ["cams"] : []));
    expect(acl.check("default", "cam1", "nvr").allowed).toBe(false);
    expect(acl.check("default", "cams", "nvr").allowed).toBe(false);
  });

  it("rules of one user never decide for another", () => {
    const acl = new Acl([rule({ user: "alice", from: ["*"], to: ["*"], action: "deny" })]);
    expect(acl.check("default", "a", "b").allowed).toBe(true);
    expect(acl.check("alice", "a", "b")).toMatchObject({ allowed: false, rule: { index: 0 } });
  });
});

describe("aclDenialMessage", () => {
  it("names the rule that denied, by place and name", () => {
    const acl = new Acl([rule({ user: "bob", from: ["*"], to: ["*"], action: "allow" }), rule({ name: "cams-only", from: ["alpha"], to: ["*"], action: "deny" })]);
    expect(aclDenialMessage(acl.check("default", "alpha", "beta"))).toBe('the server\'s ACL denies alpha -> beta (rule server.acl[1] "cams-only")');
  });

  it("names an unnamed rule by its place", () => {
    const acl = new Acl([rule({ from: ["alpha"], to: ["*"], action: "deny" })]);
    expect(aclDenialMessage(acl.check("default", "alpha", "beta"))).toBe("the server's ACL denies alpha -> beta (rule server.acl[0])");
  });

  it("says when no rule of the user allows the link", () => {
    const acl = new Acl([rule({ from: ["gamma"], to: ["*"], action: "allow" })]);
    expect(aclDenialMessage(acl.check("default", "alpha", "beta"))).toBe("the server's ACL denies alpha -> beta (no rule of user default allows it)");
  });
});
