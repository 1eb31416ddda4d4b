//! The dispatch map's tile server (`--map-tiles`, default none): a Leaflet URL template such
//! as `https://{s}.tile.example.org/{z}/{x}/{y}.png`. The dispatch page's Content Security
//! Policy allows images from exactly that template's origin and no other; without tiles the
//! map draws positions on a coordinate grid and loads nothing from outside.

/// Why a tile template is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MapTilesError {
    /// Not an absolute http(s) URL once its placeholders are filled.
    #[error("map tiles: {0:?} is not an http or https URL template")]
    NotHttp(String),
    /// Lacks one of `{z}`, `{x}`, `{y}`.
    #[error("map tiles: the template must hold {{z}}, {{x}} and {{y}}")]
    Placeholders,
    /// Holds a character that could end the CSP directive or break out of the attribute.
    #[error("map tiles: the template holds a space, quote, semicolon or comma")]
    Characters,
}

/// A validated tile template and the origin the page's CSP allows for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapTiles {
    template: String,
    origin: String,
}

impl MapTiles {
    /// Checks `template`: http(s), `{z}`/`{x}`/`{y}` present, optional `{s}` as the host's
    /// first label (allowed as `*.` in the CSP) and `{r}`.
    pub fn parse(template: &str) -> Result<Self, MapTilesError> {
        let template = template.trim();
        if template
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | ';' | ',' | '<' | '>'))
        {
            return Err(MapTilesError::Characters);
        }
        if !["{z}", "{x}", "{y}"].iter().all(|p| template.contains(p)) {
            return Err(MapTilesError::Placeholders);
        }
        let filled = template
            .replace("{s}", "a")
            .replace("{z}", "0")
            .replace("{x}", "0")
            .replace("{y}", "0")
            .replace("{r}", "");
        let not_http = || MapTilesError::NotHttp(template.to_owned());
        let url = url::Url::parse(&filled).map_err(|_| not_http())?;
        if !matches!(url.scheme(), "http" | "https") || !url.username().is_empty() {
            return Err(not_http());
        }
        let host = url.host_str().ok_or_else(not_http)?;
        // `{s}` may only be the first label of the host: the CSP then allows `*.rest`.
        let written_host = template
            .split_once("://")
            .map(|(_, rest)| rest.split(['/', ':']).next().unwrap_or(""))
            .unwrap_or("");
        let host = if written_host.contains("{s}") {
            let rest = written_host
                .strip_prefix("{s}.")
                .filter(|r| !r.contains('{'))
                .ok_or_else(not_http)?;
            format!("*.{}", rest.to_ascii_lowercase())
        } else {
            host.to_owned()
        };
        let origin = match url.port() {
            Some(port) => format!("{}://{host}:{port}", url.scheme()),
            None => format!("{}://{host}", url.scheme()),
        };
        Ok(Self {
            template: template.to_owned(),
            origin,
        })
    }

    /// The template, for Leaflet.
    pub fn template(&self) -> &str {
        &self.template
    }

    /// The origin the CSP's `img-src` allows (`https://*.tile.example.org`).
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_origin_is_the_templates_and_s_becomes_a_wildcard_label() {
        let t = MapTiles::parse("https://{s}.tile.Example.org/{z}/{x}/{y}{r}.png").unwrap();
        assert_eq!(t.origin(), "https://*.tile.example.org");
        assert_eq!(
            t.template(),
            "https://{s}.tile.Example.org/{z}/{x}/{y}{r}.png"
        );
        let t = MapTiles::parse("http://127.0.0.1:8089/tiles/{z}/{x}/{y}.png").unwrap();
        assert_eq!(t.origin(), "http://127.0.0.1:8089");
    }

    #[test]
    fn bad_templates_are_refused() {
        assert_eq!(
            MapTiles::parse("https://tiles.example/{z}/{x}.png"),
            Err(MapTilesError::Placeholders)
        );
        assert_eq!(
            MapTiles::parse("https://a.example/{z}/{x}/{y}.png; script-src *"),
            Err(MapTilesError::Characters)
        );
        for bad in [
            "ftp://tiles.example/{z}/{x}/{y}.png",
            "/tiles/{z}/{x}/{y}.png",
            "https://user@tiles.example/{z}/{x}/{y}.png",
            "https://tiles.{s}.example/{z}/{x}/{y}.png",
        ] {
            assert!(
                matches!(MapTiles::parse(bad), Err(MapTilesError::NotHttp(_))),
                "{bad}"
            );
        }
    }
}
