//! Test helpers: throwaway PostgreSQL databases.
#![allow(dead_code)]

use rand::RngCore;
use tokio_postgres::NoTls;

/// The maintenance database tests create their databases from.
fn admin_url() -> String {
    std::env::var("SOTONG_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A fresh, uniquely named PostgreSQL database, dropped when this guard drops (also when
/// the test panics).
pub struct PgDb {
    pub url: String,
    pub name: String,
    admin: String,
}

impl PgDb {
    /// `None` (the test is skipped) only when `SOTONG_TEST_POSTGRES=off`; an unreachable
    /// server fails the test.
    pub async fn create() -> Option<Self> {
        let admin = admin_url();
        if admin == "off" {
            eprintln!("SOTONG_TEST_POSTGRES=off: skipping a PostgreSQL test");
            return None;
        }
        let (client, conn) = tokio_postgres::connect(&admin, NoTls)
            .await
            .unwrap_or_else(|e| {
                panic!("PostgreSQL at {admin} is unreachable ({e}); set SOTONG_TEST_POSTGRES=off to skip")
            });
        tokio::spawn(conn);
        let mut suffix = [0u8; 6];
        rand::thread_rng().fill_bytes(&mut suffix);
        let name = format!("sotong_test_{}_{}", std::process::id(), hex::encode(suffix));
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        let (base, _) = admin.rsplit_once('/').expect("admin url has a database");
        Some(Self {
            url: format!("{base}/{name}"),
            name,
            admin,
        })
    }

    /// A client on this database, for poking at it directly.
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url, NoTls)
            .await
            .expect("connect to test database");
        tokio::spawn(conn);
        client
    }
}

impl PgDb {
    /// Drops the database now, cutting every connection to it (a lost database server, as
    /// the instances on it see it).
    pub async fn drop_now(&self) {
        let (client, conn) = tokio_postgres::connect(&self.admin, NoTls)
            .await
            .expect("connect to the admin database");
        tokio::spawn(conn);
        client
            .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .await
            .expect("drop test database");
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop runs inside the test's runtime; a runtime cannot block inside another, so
        // the drop gets its own thread and runtime.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let (client, conn) = tokio_postgres::connect(&admin, NoTls).await?;
                tokio::spawn(conn);
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}: {dropped:?}", self.name);
        }
    }
}
