//! [`CapabilityDiff`]: what a new version of a plugin is granted that the old
//! one was not, and what it no longer gets.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::capability::Capabilities;
use crate::manifest::{FsAccess, HostPattern, MessageAccess};

/// One effective grant, as compared across versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Grant {
    /// Access to message text changed (`none` < `read` < `write`).
    Messages {
        /// The old version's access.
        from: MessageAccess,
        /// The new version's access.
        to: MessageAccess,
    },
    /// The plugin's own kv namespace.
    Kv,
    /// Outgoing HTTP to a host pattern.
    Network {
        /// The host pattern as written in the manifest.
        pattern: String,
    },
    /// A host directory visible to the guest.
    Filesystem {
        /// The directory on the host.
        host: PathBuf,
        /// The path the guest sees it at.
        guest: String,
        /// Read-only or read-write.
        access: FsAccess,
    },
    /// The plugin's private data directory (`data-dir`), read-write.
    DataDir,
    /// An environment variable (its name; values are never reported).
    Env {
        /// The variable's name.
        name: String,
    },
    /// The plugin's name changed: a name carries a kv namespace, a data
    /// directory, the policy's section and approvals for that name, so a new
    /// name is a new identity. Never approved ahead by the policy.
    Name {
        /// The name of the version replaced.
        from: String,
        /// The name the new version takes.
        to: String,
    },
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let access = |a: &FsAccess| match a {
            FsAccess::Read => "read",
            FsAccess::ReadWrite => "read-write",
        };
        match self {
            Grant::Messages { from, to } => write!(f, "messages `{}` -> `{}`", level(*from), level(*to)),
            Grant::Kv => write!(f, "kv (own namespace)"),
            Grant::Network { pattern } => write!(f, "network `{pattern}`"),
            Grant::Filesystem { host, guest, access: a } => {
                write!(f, "filesystem `{}` -> `{guest}` ({})", host.display(), access(a))
            }
            Grant::DataDir => write!(f, "data-dir (read-write)"),
            Grant::Env { name } => write!(f, "env `{name}`"),
            Grant::Name { from, to } => write!(f, "name `{from}` -> `{to}`"),
        }
    }
}

fn level(m: MessageAccess) -> &'static str {
    match m {
        MessageAccess::None => "none",
        MessageAccess::Read => "read",
        MessageAccess::Write => "write",
    }
}

/// The difference between the effective capabilities of two versions of a plugin.
///
/// `added` lists what the new version gets and the old one did not (an
/// escalation when not empty); `removed` what it no longer gets. A message
/// access change is listed once, on the side it moves to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CapabilityDiff {
    /// Grants the new version has and the old one did not.
    pub added: Vec<Grant>,
    /// Grants the old version had and the new one does not.
    pub removed: Vec<Grant>,
}

impl CapabilityDiff {
    /// What `new` grants beyond `old`, and what it drops.
    pub fn between(old: &Capabilities, new: &Capabilities) -> CapabilityDiff {
        let mut d = CapabilityDiff::default();
        if new.messages > old.messages {
            d.added.push(Grant::Messages { from: old.messages, to: new.messages });
        } else if new.messages < old.messages {
            d.removed.push(Grant::Messages { from: old.messages, to: new.messages });
        }
        match (old.kv, new.kv) {
            (false, true) => d.added.push(Grant::Kv),
            (true, false) => d.removed.push(Grant::Kv),
            _ => {}
        }
        let net = |c: &Capabilities| -> Vec<Grant> {
            c.network.iter().map(|p: &HostPattern| Grant::Network { pattern: p.to_string() }).collect()
        };
        let fs = |c: &Capabilities| -> Vec<Grant> {
            c.preopens
                .iter()
                .map(|p| match p.guest == crate::capability::DATA_DIR_GUEST_PATH {
                    true => Grant::DataDir,
                    false => Grant::Filesystem { host: p.host.clone(), guest: p.guest.clone(), access: p.access },
                })
                .collect()
        };
        let env =
            |c: &Capabilities| -> Vec<Grant> { c.env.iter().map(|(k, _)| Grant::Env { name: k.clone() }).collect() };
        for list in [net, fs, env] {
            let (o, n) = (list(old), list(new));
            d.added.extend(n.iter().filter(|g| !o.contains(g)).cloned());
            d.removed.extend(o.iter().filter(|g| !n.contains(g)).cloned());
        }
        d
    }

    /// The new version is granted something the old one was not.
    pub fn escalates(&self) -> bool {
        !self.added.is_empty()
    }

    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

impl fmt::Display for CapabilityDiff {
    /// `gains: network `a:443`, env `X`; loses: kv (own namespace)`, or
    /// `no permission changes`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |v: &[Grant]| v.iter().map(|g| g.to_string()).collect::<Vec<_>>().join(", ");
        match (self.added.is_empty(), self.removed.is_empty()) {
            (true, true) => write!(f, "no permission changes"),
            (false, true) => write!(f, "gains: {}", join(&self.added)),
            (true, false) => write!(f, "loses: {}", join(&self.removed)),
            (false, false) => write!(f, "gains: {}; loses: {}", join(&self.added), join(&self.removed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::Preopen;

    fn caps() -> Capabilities {
        Capabilities::none()
    }

    #[test]
    fn identical_capabilities_have_no_diff() {
        let d = CapabilityDiff::between(&caps(), &caps());
        assert!(d.is_empty() && !d.escalates());
        assert_eq!(d.to_string(), "no permission changes");
    }

    #[test]
    fn every_kind_of_grant_is_compared() {
        let mut old = caps();
        old.messages = MessageAccess::Read;
        old.env.push(("OLD".into(), "secret".into()));
        old.network.push("a.example.com:443".parse().unwrap());
        let mut new = caps();
        new.messages = MessageAccess::Write;
        new.kv = true;
        new.network.push("a.example.com:443".parse().unwrap());
        new.network.push("b.example.com:443".parse().unwrap());
        new.preopens.push(Preopen { host: "/srv/data".into(), guest: "/data".into(), access: FsAccess::ReadWrite });
        let d = CapabilityDiff::between(&old, &new);
        assert!(d.escalates());
        assert_eq!(
            d.to_string(),
            "gains: messages `read` -> `write`, kv (own namespace), network `b.example.com:443`, \
             filesystem `/srv/data` -> `/data` (read-write); loses: env `OLD`"
        );
        assert!(!d.to_string().contains("secret"), "env values are never reported");
        let back = CapabilityDiff::between(&new, &old);
        assert!(back.escalates(), "env `OLD` comes back");
        assert_eq!(back.removed.len(), 4);
    }

    #[test]
    fn dropping_grants_is_not_an_escalation() {
        let mut old = caps();
        old.kv = true;
        old.messages = MessageAccess::Write;
        let d = CapabilityDiff::between(&old, &caps());
        assert!(!d.escalates());
        assert_eq!(d.to_string(), "loses: messages `write` -> `none`, kv (own namespace)");
    }
}
