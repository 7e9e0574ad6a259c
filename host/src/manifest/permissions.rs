//! [`Permissions`]: what a plugin asks to be granted, in either of two forms.

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::de::parsed;
use super::{EnvVarName, HostPattern};

/// What the plugin asks for. Nothing is granted by default, and the operator's
/// policy may grant less than is asked: effective capabilities are the
/// manifest's permissions ∩ the policy.
///
/// Written either as a map (the plugbox form):
///
/// ```yaml
/// permissions:
///   messages: read
///   kv: true
///   network: [api.openai.com:443, "*.example.com"]
///   filesystem:
///     - { host: ./data, guest: /data, access: read }
///   env: [LOG_LEVEL]
///   data-dir: true
/// ```
///
/// or as the seed format's list, each item meaning:
///
/// | item             | same as                                            |
/// |------------------|----------------------------------------------------|
/// | `read_messages`  | `messages: read`                                   |
/// | `write_messages` | `messages: write`                                  |
/// | `write_files`    | `data-dir: true` (the plugin's private data directory, read-write) |
/// | `network_access` | `network-from-policy: true` (the hosts the operator's policy lists for the plugin) |
///
/// It always serializes in the map form.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Permissions {
    /// Access to the text of prompts and responses.
    pub messages: MessageAccess,
    /// A private namespace in the host's key/value store.
    pub kv: bool,
    /// Hosts the plugin may send HTTP requests to.
    pub network: Vec<HostPattern>,
    /// The plugin may reach the hosts the operator's policy lists for it
    /// (the seed's `network_access`).
    pub network_from_policy: bool,
    /// Host directories made visible to the plugin.
    pub filesystem: Vec<FsGrant>,
    /// Environment variables the plugin may read.
    pub env: Vec<EnvVarName>,
    /// Read-write access to the plugin's own private data directory (the
    /// seed's `write_files`).
    pub data_dir: bool,
}

/// How much of the message text (prompts, responses, chunks) a plugin sees.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum MessageAccess {
    /// The plugin receives requests with message text removed (default).
    #[default]
    None,
    /// The plugin reads message text; changes it makes to the text are refused.
    Read,
    /// The plugin reads and may change message text.
    Write,
}

/// A host directory made visible to the plugin at a guest path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FsGrant {
    /// The host directory, relative to the manifest's directory or absolute.
    /// Directories outside the plugin's own directory need the operator's
    /// explicit policy.
    #[serde(deserialize_with = "de_host_path")]
    pub host: PathBuf,
    /// Where the plugin sees it: an absolute guest path such as `/data`.
    #[serde(deserialize_with = "de_guest_path")]
    pub guest: String,
    /// `read` (default) or `read-write`.
    #[serde(default)]
    pub access: FsAccess,
}

/// Access to a granted directory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FsAccess {
    /// Read files and list directories (default).
    #[default]
    Read,
    /// Also create, write and delete.
    ReadWrite,
}

fn de_host_path<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    parsed(d, "a host directory", |s| {
        if s.is_empty() {
            Err("the path is empty; write `.` for the manifest's directory".into())
        } else {
            Ok(s.into())
        }
    })
}

fn de_guest_path<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    parsed(d, "an absolute guest path", |s| {
        if !s.starts_with('/') {
            Err(format!("`{s}` must be an absolute path, such as `/data`"))
        } else if s.split('/').any(|part| part == "..") {
            Err(format!("`{s}` must not contain `..`"))
        } else {
            Ok(s.to_owned())
        }
    })
}

/// The map form of `permissions`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct PermissionMap {
    /// Access to the text of prompts and responses: `none` (default), `read` or `write`.
    #[serde(default)]
    messages: MessageAccess,
    /// A private namespace in the host's key/value store.
    #[serde(default)]
    kv: bool,
    /// Hosts the plugin may send HTTP requests to.
    #[serde(default)]
    network: Vec<HostPattern>,
    /// The hosts the operator's policy lists for this plugin.
    #[serde(default)]
    network_from_policy: bool,
    /// Host directories made visible to the plugin.
    #[serde(default)]
    filesystem: Vec<FsGrant>,
    /// Environment variables the plugin may read.
    #[serde(default)]
    env: Vec<EnvVarName>,
    /// Read-write access to the plugin's own private data directory.
    #[serde(default)]
    data_dir: bool,
}

/// An item of the seed format's permission list.
#[derive(Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
enum SeedPermission {
    /// `messages: read`.
    ReadMessages,
    /// `messages: write`.
    WriteMessages,
    /// `data-dir: true`: read-write access to the plugin's private data directory.
    WriteFiles,
    /// `network-from-policy: true`: the hosts the operator's policy lists for the plugin.
    NetworkAccess,
}

/// The two written forms, for the JSON Schema only.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)] // Only its schema is used.
enum PermissionForms {
    /// The plugbox form.
    Map(PermissionMap),
    /// The seed format's list.
    List(Vec<SeedPermission>),
}

impl<'de> Deserialize<'de> for Permissions {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FormsVisitor)
    }
}

struct FormsVisitor;

impl<'de> Visitor<'de> for FormsVisitor {
    type Value = Permissions;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map of permissions, or a list such as `[read_messages, network_access]`")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Permissions, E> {
        Ok(Permissions::default())
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Permissions, A::Error> {
        let m = PermissionMap::deserialize(MapAccessDeserializer::new(map))?;
        Ok(Permissions {
            messages: m.messages,
            kv: m.kv,
            network: m.network,
            network_from_policy: m.network_from_policy,
            filesystem: m.filesystem,
            env: m.env,
            data_dir: m.data_dir,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Permissions, A::Error> {
        let mut p = Permissions::default();
        while let Some(item) = seq.next_element::<SeedPermission>()? {
            match item {
                SeedPermission::ReadMessages => p.messages = p.messages.max(MessageAccess::Read),
                SeedPermission::WriteMessages => p.messages = MessageAccess::Write,
                SeedPermission::WriteFiles => p.data_dir = true,
                SeedPermission::NetworkAccess => p.network_from_policy = true,
            }
        }
        Ok(p)
    }
}

impl JsonSchema for Permissions {
    fn schema_name() -> Cow<'static, str> {
        "Permissions".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let mut schema = PermissionForms::json_schema(generator);
        schema.insert(
            "description".into(),
            "What the plugin asks for (nothing by default): a map, or the seed format's list of \
             `read_messages`, `write_messages`, `write_files`, `network_access`."
                .into(),
        );
        schema
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perms(yaml: &str) -> Result<Permissions, String> {
        serde_norway::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn list_form_means_the_documented_map() {
        let p = perms("[read_messages, write_files, network_access]").unwrap();
        let expected = Permissions {
            messages: MessageAccess::Read,
            data_dir: true,
            network_from_policy: true,
            ..Permissions::default()
        };
        assert_eq!(p, expected);
        assert_eq!(perms("[write_messages, read_messages]").unwrap().messages, MessageAccess::Write);
        assert_eq!(perms("[]").unwrap(), Permissions::default());
        assert_eq!(perms("null").unwrap(), Permissions::default());
    }

    #[test]
    fn map_form_and_round_trip() {
        let p = perms(
            "{messages: write, kv: true, network: ['*.example.com'], data-dir: true, \
             filesystem: [{host: ./data, guest: /data}], env: [HOME]}",
        )
        .unwrap();
        assert_eq!(p.filesystem[0].access, FsAccess::Read);
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(perms(&json).unwrap(), p);
    }

    #[test]
    fn errors_point_at_the_item() {
        let err = perms("- read_messages\n- launch_missiles\n").unwrap_err();
        assert!(err.starts_with(".[1]: unknown variant `launch_missiles`, expected one of"), "{err}");
        assert!(err.ends_with("at line 2 column 3"), "{err}");
        let err = perms("messages: read\nnetwrok: []\n").unwrap_err();
        assert!(err.starts_with("unknown field `netwrok`"), "{err}");
        assert!(err.ends_with("at line 2 column 1"), "{err}");
        let err = perms("filesystem:\n  - host: d\n    guest: data\n").unwrap_err();
        assert!(err.starts_with("filesystem[0].guest: `data` must be an absolute path"), "{err}");
        assert!(err.ends_with("at line 3 column 12"), "{err}");
    }
}
