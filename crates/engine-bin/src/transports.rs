//! The transports the binary opens: the built-in ones, Kafka (the `kafka` feature, on by
//! default; it builds librdkafka), the object stores, S3, HDFS (WebHDFS) and HTTP (the
//! `stores` feature, on by default), and SQL databases for the ODBC transport (the `sql`
//! feature, on by default). One place for `engine serve` and `engine run`.

use std::collections::BTreeMap;

use endpoints::Registry;

/// The registry of every transport this build opens, Kafka clients taking `kafka_properties`
/// (`kafka.properties` of application.json), HDFS reached as `hdfs` says (`hdfs` of
/// application.json).
pub fn registry(
    kafka_properties: &BTreeMap<String, String>,
    hdfs: &service::config::HdfsConfig,
) -> Registry {
    let registry = Registry::default();
    #[cfg(feature = "kafka")]
    let registry = endpoint_kafka::register(
        registry,
        endpoint_kafka::KafkaSettings {
            properties: kafka_properties.clone(),
            ..Default::default()
        },
    );
    #[cfg(not(feature = "kafka"))]
    let _ = kafka_properties;
    #[cfg(feature = "stores")]
    let registry = endpoint_store::register(registry, crate::stores::settings(hdfs));
    #[cfg(not(feature = "stores"))]
    let _ = hdfs;
    #[cfg(feature = "sql")]
    let registry = endpoint_sql::register(registry, endpoint_sql::SqlSettings::default());
    registry
}
