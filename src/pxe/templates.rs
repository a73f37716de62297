//! The iPXE scripts and install configs rendered per node, from
//! `pxe-templates/` (compiled in). Strict: an undefined variable is an error
//! naming the template. iPXE's own `${…}` settings are left alone (minijinja
//! only reads `{{ … }}`).

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

const TEMPLATES: &[(&str, &str)] = &[
    (
        "ipxe/local.ipxe",
        include_str!("../../pxe-templates/ipxe/local.ipxe"),
    ),
    (
        "ipxe/discovery.ipxe",
        include_str!("../../pxe-templates/ipxe/discovery.ipxe"),
    ),
];

/// The compiled templates.
pub struct Templates {
    env: Environment<'static>,
}

/// What a node's templates may use.
#[derive(Debug, Clone, Serialize)]
pub struct NodeVars {
    pub node_id: String,
    pub hostname: String,
}

impl Templates {
    /// Loads and checks every template (a syntax error stops start-up).
    pub fn load() -> Result<Templates, String> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .map_err(|e| format!("template {name}: {e}"))?;
        }
        Ok(Templates { env })
    }

    /// Renders `name` for `vars`.
    pub fn render(&self, name: &str, vars: &impl Serialize) -> Result<String, String> {
        self.env
            .get_template(name)
            .and_then(|t| t.render(vars))
            .map_err(|e| format!("template {name}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render_and_undefined_variables_are_errors() {
        let t = Templates::load().unwrap();
        let out = t
            .render(
                "ipxe/local.ipxe",
                &NodeVars {
                    node_id: "n-Jr8KE6cf".into(),
                    hostname: "test01n01".into(),
                },
            )
            .unwrap();
        assert!(out.starts_with("#!ipxe"));
        assert!(out.contains("n-Jr8KE6cf test01n01: booting from the local disk"));
        assert!(t
            .render("ipxe/discovery.ipxe", &())
            .unwrap()
            .contains("${mac}"));
        let err = t
            .render("ipxe/local.ipxe", &serde_json::json!({"node_id": "n-1"}))
            .unwrap_err();
        assert!(
            err.contains("ipxe/local.ipxe") && err.contains("undefined"),
            "{err}"
        );
    }
}
