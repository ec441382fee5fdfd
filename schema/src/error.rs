//! The one error type of this crate.

use std::path::PathBuf;

/// Why a file is not a valid Envoy bootstrap.
///
/// Every variant's message names where the problem is (a field path such as
/// `static_resources.clusters[0].type`, and a line/column when the YAML parser knows it), so
/// it can be shown to a user as it is.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The file could not be read.
    #[error("reading {}: {source}", path.display())]
    Io {
        /// The file asked for.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },

    /// The text is not YAML we accept (syntax error, duplicate key, several documents).
    #[error("{message}")]
    Yaml {
        /// The parser's message, with the position it reports.
        message: String,
        /// 1-based line and column, when known.
        location: Option<(usize, usize)>,
    },

    /// The YAML does not decode as `envoy.config.bootstrap.v3.Bootstrap`: unknown field, bad
    /// enum name, wrong type, unknown `@type`, two members of one oneof, …
    #[error("{message}")]
    Schema {
        /// `field.path: what is wrong [at line L column C]`.
        message: String,
        /// 1-based line and column, when known (it points at the enclosing mapping).
        location: Option<(usize, usize)>,
    },

    /// The bootstrap decodes, but breaks one of Envoy's `validate.rules` constraints (the
    /// protoc-gen-validate annotations Envoy checks when it loads a config).
    #[error("{path}: {message}")]
    Rule {
        /// Field path, e.g. `static_resources.clusters[0].name`.
        path: String,
        /// The rule and the offending value.
        message: String,
    },

    /// The compiled-in schema is unusable; a bug in this crate, never the user's input.
    #[error("internal error in the Envoy schema: {0}")]
    Internal(String),
}

impl SchemaError {
    /// 1-based (line, column) of the problem in the YAML text, when known.
    pub fn location(&self) -> Option<(usize, usize)> {
        match self {
            SchemaError::Yaml { location, .. } | SchemaError::Schema { location, .. } => *location,
            _ => None,
        }
    }

    /// Turns a YAML deserialisation error into a [`SchemaError::Schema`] or, when it is about
    /// the YAML itself rather than Envoy's schema, a [`SchemaError::Yaml`].
    pub(crate) fn from_yaml(err: &serde_yaml_ng::Error, is_schema: bool) -> Self {
        let message = err.to_string();
        let location = err.location().map(|l| (l.line(), l.column()));
        if is_schema {
            SchemaError::Schema { message, location }
        } else {
            SchemaError::Yaml { message, location }
        }
    }
}
