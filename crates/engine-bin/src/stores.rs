//! The object stores' settings from the engine's environment: the standard `AWS_*` variables
//! and the profile files they point at (read here: libraries read neither).

/// `endpoint_store::StoreSettings` with the engine's AWS identity and defaults.
pub fn settings() -> endpoint_store::StoreSettings {
    let var = |name: &str| std::env::var(name).ok();
    let home = var("HOME").unwrap_or_default();
    let file = |variable: &str, default: &str| -> Option<String> {
        let path = var(variable)
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| format!("{home}/.aws/{default}"));
        std::fs::read_to_string(path).ok()
    };
    let credentials = file("AWS_SHARED_CREDENTIALS_FILE", "credentials");
    let config = file("AWS_CONFIG_FILE", "config");
    endpoint_store::StoreSettings {
        aws: endpoint_store::AwsSettings::from_sources(
            var,
            credentials.as_deref(),
            config.as_deref(),
        ),
        ..Default::default()
    }
}
