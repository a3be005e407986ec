//! The object stores' settings from the engine's environment: the standard `AWS_*` variables
//! and the profile files they point at (read here: libraries read neither).

/// `endpoint_store::StoreSettings` with the engine's AWS identity and defaults, and HDFS as
/// `hdfs` says (its user else `HADOOP_USER_NAME`, Hadoop's own variable, else the engine's
/// user).
pub fn settings(hdfs: &service::config::HdfsConfig) -> endpoint_store::StoreSettings {
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
        hdfs: endpoint_store::HdfsSettings {
            namenodes: hdfs.namenodes.clone(),
            user: hdfs
                .user
                .clone()
                .or_else(|| var("HADOOP_USER_NAME"))
                .or_else(|| var("USER"))
                .filter(|u| !u.is_empty()),
            delegation_token: hdfs.delegation_token.clone(),
        },
        ..Default::default()
    }
}
