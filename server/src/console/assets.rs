//! The console's CSS, JavaScript and logo, embedded in the binary (no CDN: the console works
//! offline on an intranet). Each is served under a name holding a hash of its content, so
//! browsers may cache it for a year and a new build is fetched at once.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// URL prefix of the assets.
pub const PREFIX: &str = "/console/assets/";

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// Its stem, e.g. `console` for `console.css`.
    stem: &'static str,
    /// Its extension.
    ext: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
    name: OnceLock<String>,
}

/// The stylesheet.
pub static CSS: Asset = Asset {
    stem: "console",
    ext: "css",
    content_type: "text/css; charset=utf-8",
    bytes: include_bytes!("assets/console.css"),
    name: OnceLock::new(),
};

/// The script (every page works without it).
pub static JS: Asset = Asset {
    stem: "console",
    ext: "js",
    content_type: "text/javascript; charset=utf-8",
    bytes: include_bytes!("assets/console.js"),
    name: OnceLock::new(),
};

/// The logo, also the favicon.
pub static LOGO: Asset = Asset {
    stem: "logo",
    ext: "svg",
    content_type: "image/svg+xml",
    bytes: include_bytes!("assets/logo.svg"),
    name: OnceLock::new(),
};

/// The dispatch page's stylesheet.
pub static DISPATCH_CSS: Asset = Asset {
    stem: "dispatch",
    ext: "css",
    content_type: "text/css; charset=utf-8",
    bytes: include_bytes!("assets/dispatch.css"),
    name: OnceLock::new(),
};

/// The dispatch page's script: the live list, the map, the alert, the chat and the actions.
pub static DISPATCH_JS: Asset = Asset {
    stem: "dispatch",
    ext: "js",
    content_type: "text/javascript; charset=utf-8",
    bytes: include_bytes!("assets/dispatch.js"),
    name: OnceLock::new(),
};

/// Leaflet 1.9.4 from npm, vendored unmodified (`assets/vendor/leaflet/`, BSD-2-Clause).
pub static LEAFLET_JS: Asset = Asset {
    stem: "leaflet",
    ext: "js",
    content_type: "text/javascript; charset=utf-8",
    bytes: include_bytes!("assets/vendor/leaflet/leaflet.js"),
    name: OnceLock::new(),
};

/// Leaflet's stylesheet.
pub static LEAFLET_CSS: Asset = Asset {
    stem: "leaflet",
    ext: "css",
    content_type: "text/css; charset=utf-8",
    bytes: include_bytes!("assets/vendor/leaflet/leaflet.css"),
    name: OnceLock::new(),
};

static ALL: [&Asset; 7] = [
    &CSS,
    &JS,
    &LOGO,
    &DISPATCH_CSS,
    &DISPATCH_JS,
    &LEAFLET_JS,
    &LEAFLET_CSS,
];

impl Asset {
    /// Its served file name: `stem-<first 12 hex digits of SHA-256>.ext`.
    pub fn file_name(&self) -> &str {
        self.name.get_or_init(|| {
            let hash = hex::encode(sotong_core::hash::sha256(self.bytes));
            format!("{}-{}.{}", self.stem, &hash[..12], self.ext)
        })
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("{PREFIX}{}", self.file_name())
    }
}

/// `GET /console/assets/{file}`: an embedded file by its hashed name, cached for a year;
/// anything else is 404 (an old hash included: the page that asked is from an older build).
pub async fn serve(Path(file): Path<String>) -> Response {
    let Some(asset) = ALL.iter().find(|a| a.file_name() == file) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static(asset.content_type)),
            (
                CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            ),
            (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        asset.bytes,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_a_content_hash_and_differ() {
        let css = CSS.file_name();
        assert!(
            css.starts_with("console-") && css.ends_with(".css"),
            "{css}"
        );
        assert_eq!(css.len(), "console-".len() + 12 + ".css".len());
        assert_ne!(CSS.file_name(), JS.file_name());
        assert!(LOGO.url().starts_with("/console/assets/logo-"));
    }

    #[tokio::test]
    async fn serves_by_hashed_name_with_type_and_long_cache() {
        let resp = serve(Path(JS.file_name().to_owned())).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            resp.headers()[CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert!(resp.headers()[CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("immutable"));
        let resp = serve(Path("console.css".to_owned())).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    }
}
