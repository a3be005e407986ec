//! The database servers start, take their test user's password over TCP, and go away when
//! dropped.

use std::net::TcpStream;

use test_servers::{MariaDbServer, PostgresServer};

#[test]
fn postgres_starts_with_its_database_and_stops() {
    let pg = PostgresServer::start();
    pg.psql("CREATE TABLE t (n int); INSERT INTO t VALUES (1), (2);");
    assert_eq!(pg.psql("SELECT sum(n) FROM t").trim(), "3");
    assert_eq!(
        pg.psql("SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = current_database()")
            .trim(),
        "UTF8"
    );
    let address = pg.address();
    assert!(TcpStream::connect(&address).is_ok());
    drop(pg);
    assert!(
        TcpStream::connect(&address).is_err(),
        "still listening on {address}"
    );
}

#[test]
fn mariadb_starts_with_its_database_and_stops() {
    let db = MariaDbServer::start();
    db.sql("CREATE TABLE t (n int); INSERT INTO t VALUES (1), (2);");
    assert_eq!(db.sql("SELECT sum(n) FROM t").trim(), "3");
    let address = db.address();
    assert!(TcpStream::connect(&address).is_ok());
    drop(db);
    assert!(
        TcpStream::connect(&address).is_err(),
        "still listening on {address}"
    );
}
