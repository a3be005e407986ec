//! The SQL endpoint against real databases: private PostgreSQL and MariaDB servers started
//! here (test-servers; `scripts/setup` installs them, and a missing one fails the test), and
//! SQLite files.

mod conformance;
mod mariadb;
mod postgres;
mod sqlite;
mod support;
