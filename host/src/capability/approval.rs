//! Which grants the operator's policy approves ahead (its `approval`
//! section, [`ApprovalPolicy`]): what decides whether a plugin that appears
//! at run time, or a new version that gains grants, is held for approval.

use std::path::{Path, PathBuf};

use super::{Grant, canonical_lenient};
use crate::manifest::FsAccess;
use crate::policy::{ApprovalPolicy, ApprovedGrants};

/// The grants of `grants` that the policy does not approve ahead for
/// `plugin` (its own entry and the `"*"` entry together). Empty: nothing to
/// hold for.
pub fn uncovered<'g>(policy: &ApprovalPolicy, plugin: &str, grants: &'g [Grant]) -> Vec<&'g Grant> {
    let entries = entries(policy, plugin);
    grants.iter().filter(|g| !entries.iter().any(|e| covers(e, g))).collect()
}

/// Whether a plugin `plugin` that appears at run time with `grants` loads
/// without approval: an entry for it (or `"*"`) exists and covers every grant.
pub fn approves_new(policy: &ApprovalPolicy, plugin: &str, grants: &[Grant]) -> bool {
    !entries(policy, plugin).is_empty() && uncovered(policy, plugin, grants).is_empty()
}

fn entries<'p>(policy: &'p ApprovalPolicy, plugin: &str) -> Vec<&'p ApprovedGrants> {
    [plugin, "*"].iter().filter_map(|k| policy.auto_approve.get(*k)).collect()
}

/// Whether `entry` approves `grant`.
pub fn covers(entry: &ApprovedGrants, grant: &Grant) -> bool {
    let under = |dirs: &[PathBuf], host: &Path| dirs.iter().any(|d| host.starts_with(canonical_lenient(d)));
    match grant {
        Grant::Messages { to, .. } => entry.messages.is_some_and(|m| *to <= m),
        Grant::Kv => entry.kv,
        Grant::Network { pattern } => entry.network.iter().any(|p| p.to_string() == *pattern),
        Grant::Env { name } => entry.env.iter().any(|e| e == name),
        Grant::DataDir => entry.data_dir,
        // Taking another name takes that name's kv namespace, data directory
        // and policy: only the operator, by `approve`, decides that.
        Grant::Name { .. } => false,
        Grant::Filesystem { host, access, .. } => match access {
            FsAccess::Read => under(&entry.filesystem, host) || under(&entry.filesystem_write, host),
            FsAccess::ReadWrite => under(&entry.filesystem_write, host),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::MessageAccess;

    fn policy(yaml: &str) -> ApprovalPolicy {
        serde_norway::from_str(yaml).unwrap()
    }

    #[test]
    fn only_exactly_named_grants_are_approved() {
        let p = policy(
            "auto-approve:\n  '*': { messages: read }\n  redactor: { messages: write, env: [KEY], \
             network: ['api.example.com:443'], kv: true, filesystem: [/srv/models] }\n",
        );
        let write = Grant::Messages { from: MessageAccess::None, to: MessageAccess::Write };
        let read = Grant::Messages { from: MessageAccess::None, to: MessageAccess::Read };
        let env = Grant::Env { name: "KEY".into() };
        let other_env = Grant::Env { name: "OTHER".into() };
        let net = Grant::Network { pattern: "api.example.com:443".into() };
        let models = Grant::Filesystem { host: "/srv/models/a".into(), guest: "/m".into(), access: FsAccess::Read };
        let models_rw =
            Grant::Filesystem { host: "/srv/models".into(), guest: "/m".into(), access: FsAccess::ReadWrite };
        let all = [write.clone(), env.clone(), net.clone(), Grant::Kv, models.clone()];
        assert!(uncovered(&p, "redactor", &all).is_empty());
        assert!(approves_new(&p, "redactor", &all));
        assert_eq!(uncovered(&p, "redactor", &[other_env.clone(), models_rw.clone()]).len(), 2);
        // Others get only what `*` names.
        assert!(approves_new(&p, "anyone", std::slice::from_ref(&read)));
        assert_eq!(uncovered(&p, "anyone", &[write, env, net, Grant::Kv, Grant::DataDir]).len(), 5);
        // No entry at all: a new plugin is held even with no grants.
        let none = policy("{}");
        assert!(!approves_new(&none, "x", &[]));
        assert!(uncovered(&none, "x", &[]).is_empty(), "an upgrade gaining nothing is never held");
        assert_eq!(uncovered(&none, "x", &[read]).len(), 1);
    }
}
