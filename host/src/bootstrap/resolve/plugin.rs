//! Wasm plugins: the HTTP filter's and the singleton service's `config` and `vm_config`.

use std::path::PathBuf;
use std::sync::Arc;

use super::Resolver;
use crate::bootstrap::raw;
use crate::bootstrap::*;
use crate::error::ConfigError;

impl Resolver<'_> {
    pub(super) fn plugin(
        &self,
        path: &str,
        c: raw::PluginConfig,
    ) -> Result<WasmPlugin, ConfigError> {
        let vm = c.vm_config;
        const RUNTIMES: [&str; 4] = [
            "envoy.wasm.runtime.v8",
            "envoy.wasm.runtime.wasmtime",
            "envoy.wasm.runtime.wamr",
            "envoy.wasm.runtime.wavm",
        ];
        if !RUNTIMES.contains(&vm.runtime.as_str()) {
            return Err(self.err(
                format!("{path}.vm_config.runtime"),
                format!(
                    "unknown runtime {:?} (expected one of {})",
                    vm.runtime,
                    RUNTIMES.join(", ")
                ),
            ));
        }
        let cpath = format!("{path}.vm_config.code.local");
        let code = match &self.opts.wasm_override {
            Some(o) => o.clone(),
            None => {
                let local = vm.code.local;
                match (local.filename, local.inline_bytes, local.inline_string) {
                    (Some(f), None, None) if f == BUILTIN_WASM => WasmCode::Embedded,
                    (Some(f), None, None) => WasmCode::File(PathBuf::from(f)),
                    (None, b @ Some(_), None) => WasmCode::Bytes(Arc::from(self.data_source(
                        &cpath,
                        raw::DataSource {
                            filename: None,
                            inline_bytes: b,
                            inline_string: None,
                        },
                    )?)),
                    (None, None, Some(s)) => WasmCode::Bytes(Arc::from(s.into_bytes())),
                    _ => {
                        return Err(self.err(
                            &cpath,
                            "exactly one of filename, inline_bytes, inline_string is required",
                        ))
                    }
                }
            }
        };
        if let (WasmCode::File(f), false) = (&code, self.opts.skip_file_checks) {
            if let Some(problem) = wasm_file_problem(f) {
                return Err(self.err(format!("{cpath}.filename"), problem));
            }
        }
        let mut environment = Vec::new();
        if let Some(env) = vm.environment_variables {
            // Envoy (`WasmConfig`): every key once across key_values and host_env_keys.
            let mut seen: std::collections::HashSet<&str> =
                env.key_values.keys().map(|k| k.as_str()).collect();
            for key in &env.host_env_keys {
                if !seen.insert(key.as_str()) {
                    return Err(self.err(
                        format!("{path}.vm_config.environment_variables"),
                        format!("Key {key} is duplicated in environment_variables; all the keys must be unique"),
                    ));
                }
            }
            for key in env.host_env_keys {
                if let Ok(v) = std::env::var(&key) {
                    environment.push((key, v));
                }
            }
            for (k, v) in env.key_values {
                environment.push((k, v));
            }
        }
        let spec = PluginSpec {
            name: c.name,
            root_id: c.root_id,
            vm_id: vm.vm_id,
            configuration: c
                .configuration
                .map(|s| s.0.into_bytes())
                .unwrap_or_default(),
            vm_configuration: vm
                .configuration
                .map(|s| s.0.into_bytes())
                .unwrap_or_default(),
            environment,
            code,
            fail_open: c.fail_open,
            allow_on_headers_stop_iteration: c.allow_on_headers_stop_iteration.unwrap_or(false),
        };
        Ok(WasmPlugin {
            config_path: path.to_string(),
            spec,
        })
    }
}
