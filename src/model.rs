//! Shared vocabulary that imports nothing from the crate (as mini-redis's `frame.rs`): what a row
//! becomes (`ObjectType`, `ElementKind`), how it relates to MoEngage (`SyncMode`), which object is
//! processed (`ObjectRef`), MoEngage's documented limits, and the closed set of MoEngage endpoints
//! with the one function that turns an endpoint into a URL. `config` builds from these.
//!
//! No other code builds a MoEngage URL. A URL is the parsed base (scheme, host, port; checked at
//! start-up) with its path replaced by `/v1/{api}/{app_id}`, segment by segment, so that nothing a
//! dead-letter message, a work item or a configuration value holds can change the host, add
//! credentials, a query or another path.

use std::fmt;

use reqwest::Url;

/// `s` cut to at most `max` bytes (on a character boundary), with `…` when cut: untrusted values
/// (headers, ids, MoEngage's answers) are quoted in messages and reports without growing them.
pub fn shorten(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Longest value quoted in a message: a hostile export must not make a megabyte-long reason.
pub const QUOTE_MAX_BYTES: usize = 200;

/// `s` as a quoted, escaped string (`"…"`), cut to [`QUOTE_MAX_BYTES`].
pub fn quoted(s: &str) -> String {
    let q = format!("{:?}", shorten(s, QUOTE_MAX_BYTES));
    // Escaping can grow a value sixfold (control characters become `\u{1f}`): cut again after.
    if q.len() <= QUOTE_MAX_BYTES + 2 {
        q
    } else {
        // Cut inside the quotes and close them again, so that the value stays one quoted string.
        format!("{}\"", shorten(&q, QUOTE_MAX_BYTES))
    }
}

/// The MoEngage Data API key. Wrapped so that neither `Debug` nor `Display` can leak it into a log
/// line or an error message.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(key.into())
    }
    /// The key itself; only the HTTP client's auth header should call this.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What a row becomes in MoEngage (`OBJECT_TYPE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectType {
    /// One Track User call per row.
    UserAttributes,
    /// One Create Event call per row.
    Events,
    /// Transition calls of up to `BATCH_MAX_RECORDS` customer/event elements.
    BulkImport,
}

impl ObjectType {
    pub const ACCEPTED: &'static str = "user_attributes, events or bulk_import";
    pub fn parse(value: &str) -> Option<Self> {
        match value
            .trim()
            .to_ascii_lowercase()
            .replace([' ', '-'], "_")
            .as_str()
        {
            "user_attributes" => Some(ObjectType::UserAttributes),
            "events" => Some(ObjectType::Events),
            "bulk_import" => Some(ObjectType::BulkImport),
            _ => None,
        }
    }
    /// The API its rows go to (oversized or split rows aside).
    pub fn endpoint(self) -> Endpoint {
        match self {
            ObjectType::UserAttributes => Endpoint::Customer,
            ObjectType::Events => Endpoint::Event,
            ObjectType::BulkImport => Endpoint::Transition,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectType::UserAttributes => "user_attributes",
            ObjectType::Events => "events",
            ObjectType::BulkImport => "bulk_import",
        }
    }
}

/// How rows relate to what MoEngage already holds (`SYNC_MODE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// Create or update (MoEngage's default behaviour).
    Upsert,
    /// Only rows never delivered before.
    Insert,
    /// Update existing users only (`update_existing_only: true`); never create.
    Update,
    /// As `Upsert`, and a user this sync delivered who is absent from a complete snapshot is
    /// deleted (users only; see `app::mirror`).
    Mirror,
}

impl SyncMode {
    pub const ACCEPTED: &'static str = "upsert, insert, update or mirror";
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "upsert" => Some(SyncMode::Upsert),
            "insert" => Some(SyncMode::Insert),
            "update" => Some(SyncMode::Update),
            "mirror" => Some(SyncMode::Mirror),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::Upsert => "upsert",
            SyncMode::Insert => "insert",
            SyncMode::Update => "update",
            SyncMode::Mirror => "mirror",
        }
    }
}

/// Seed default: at most 50 elements per Transition call.
pub const DEFAULT_BATCH_MAX_RECORDS: usize = 50;
/// Seed and MoEngage docs: a Transition body stays under 100 KB.
pub const DEFAULT_BATCH_MAX_BYTES: usize = 100_000;
/// MoEngage documents 128 KB for Track User / Create Event bodies.
pub const SINGLE_REQUEST_MAX_BYTES: usize = 128_000;
/// What a row became.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementKind {
    Customer,
    Event,
}

/// The object being processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub bucket: String,
    pub key: String,
}

/// Which MoEngage API a request goes to. The set is closed: nothing outside it can be requested.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// Track User, `POST /v1/customer/{app_id}`.
    Customer,
    /// Create Event, `POST /v1/event/{app_id}`.
    Event,
    /// Bulk Import, `POST /v1/transition/{app_id}`.
    Transition,
    /// The connection test, `POST /v1/integrations/authentication` (no app id in its path).
    Authentication,
    /// Delete Users, `POST /v1/customer/delete?app_id={app_id}` (the app id in the query).
    Delete,
}

impl Endpoint {
    /// The endpoints that carry data, i.e. that a dead-letter message may name.
    pub const DATA: [Endpoint; 4] = [
        Endpoint::Customer,
        Endpoint::Event,
        Endpoint::Transition,
        Endpoint::Delete,
    ];

    /// The name used in dead-letter messages (`kind`) and in paths.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Customer => "customer",
            Endpoint::Event => "event",
            Endpoint::Transition => "transition",
            Endpoint::Authentication => "authentication",
            Endpoint::Delete => "delete",
        }
    }

    /// A data endpoint by its name; `None` for anything else (the connection test included).
    pub fn data_by_name(name: &str) -> Option<Endpoint> {
        Self::DATA.into_iter().find(|e| e.name() == name)
    }

    /// Path segments after the host.
    fn segments(self, app_id: &str) -> [&str; 3] {
        match self {
            Endpoint::Authentication => ["v1", "integrations", "authentication"],
            Endpoint::Delete => ["v1", "customer", "delete"],
            data => ["v1", data.name(), app_id],
        }
    }

    /// The path, for people and for the `endpoint` field of dead-letter messages:
    /// `/v1/transition/APPID`, `/v1/customer/delete?app_id=APPID`.
    pub fn path(self, app_id: &str) -> String {
        let path = self
            .segments(app_id)
            .iter()
            .fold(String::new(), |mut p, s| {
                p.push('/');
                p.push_str(s);
                p
            });
        match self {
            Endpoint::Delete => format!("{path}?app_id={app_id}"),
            _ => path,
        }
    }

    /// The URL to POST to: `base` (scheme, host, port) with this endpoint's path. The app id is one
    /// percent-encoded path segment, whatever characters it holds.
    pub fn url(self, base: &Url, app_id: &str) -> Url {
        let mut url = base.clone();
        url.set_query(None);
        url.set_fragment(None);
        // Credentials in a base URL are refused at start-up; clear them anyway.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        if let Ok(mut path) = url.path_segments_mut() {
            path.clear().extend(self.segments(app_id));
        }
        if self == Endpoint::Delete {
            url.query_pairs_mut().append_pair("app_id", app_id);
        }
        url
    }

    /// Reads a path this project wrote into a dead-letter message (`/v1/{api}/{app_id}`) back into
    /// the endpoint and app id. Anything else, however close, is `None`.
    pub fn parse_data_path(path: &str) -> Option<(Endpoint, &str)> {
        let plain = |b: u8| b.is_ascii_graphic() && !b"/?#@%&=\\".contains(&b);
        let (endpoint, app_id) = match path.strip_prefix("/v1/customer/delete?app_id=") {
            Some(app_id) => (Endpoint::Delete, app_id),
            None => {
                let rest = path.strip_prefix("/v1/")?;
                let (name, app_id) = rest.split_once('/')?;
                let endpoint = Self::data_by_name(name).filter(|e| *e != Endpoint::Delete)?;
                (endpoint, app_id)
            }
        };
        (!app_id.is_empty() && app_id.bytes().all(plain)).then_some((endpoint, app_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_the_base_host_whatever_the_app_id() {
        let base = Url::parse("https://api-01.moengage.com").unwrap();
        assert_eq!(
            Endpoint::Transition.url(&base, "APP1").as_str(),
            "https://api-01.moengage.com/v1/transition/APP1"
        );
        assert_eq!(
            Endpoint::Authentication.url(&base, "APP1").as_str(),
            "https://api-01.moengage.com/v1/integrations/authentication"
        );
        for hostile in [
            "@evil.example/x",
            "../../steal",
            "x?y=1#z",
            "a/b",
            "..",
            "%2e%2e",
            "\\evil",
        ] {
            let url = Endpoint::Customer.url(&base, hostile);
            assert_eq!(url.host_str(), Some("api-01.moengage.com"), "{hostile}");
            assert_eq!(url.username(), "");
            assert_eq!(url.query(), None, "{hostile}");
            // `.` and `..` are dropped by the URL type rather than followed; the configuration
            // refuses such app ids before they get here.
            assert!(
                url.path_segments().unwrap().count() <= 3,
                "{hostile}: {url}"
            );
            assert!(url.path().starts_with("/v1/customer"), "{hostile}: {url}");
        }
        let local = Url::parse("http://127.0.0.1:8080/").unwrap();
        assert_eq!(
            Endpoint::Event.url(&local, "A").as_str(),
            "http://127.0.0.1:8080/v1/event/A"
        );
        // Delete Users takes the app id in the query, encoded whatever it holds.
        assert_eq!(
            Endpoint::Delete.url(&base, "APP1").as_str(),
            "https://api-01.moengage.com/v1/customer/delete?app_id=APP1"
        );
        let hostile = Endpoint::Delete.url(&base, "A&x=@evil.example/#");
        assert_eq!(hostile.host_str(), Some("api-01.moengage.com"));
        assert_eq!(hostile.path(), "/v1/customer/delete");
        assert_eq!(
            hostile.query_pairs().collect::<Vec<_>>(),
            vec![("app_id".into(), "A&x=@evil.example/#".into())]
        );
        assert_eq!(
            Endpoint::Delete.path("APP1"),
            "/v1/customer/delete?app_id=APP1"
        );
    }

    #[test]
    fn only_paths_this_project_writes_parse_back() {
        assert_eq!(
            Endpoint::parse_data_path("/v1/transition/WS1"),
            Some((Endpoint::Transition, "WS1"))
        );
        assert_eq!(
            Endpoint::parse_data_path("/v1/customer/A-1_b"),
            Some((Endpoint::Customer, "A-1_b"))
        );
        for forged in [
            "@127.0.0.1:9/steal",
            "http://127.0.0.1:9/steal",
            ".evil@127.0.0.1:9/v1/transition/APP",
            "/v1/transition/APP/../../x",
            "/v1/transition/",
            "/v1/integrations/authentication",
            "/v1/customer/APP?x=1",
            "/v1/customer/A@b",
            "/v2/customer/APP",
            "v1/customer/APP",
            "/v1/delete/APP",
            "/v1/customer/delete?app_id=",
            "/v1/customer/delete?app_id=A&host=evil",
            "/v1/customer/delete?app_id=A/../x",
        ] {
            assert_eq!(Endpoint::parse_data_path(forged), None, "{forged}");
        }
        for e in Endpoint::DATA {
            assert_eq!(Endpoint::parse_data_path(&e.path("X")), Some((e, "X")));
            assert_eq!(Endpoint::data_by_name(e.name()), Some(e));
        }
        assert_eq!(Endpoint::data_by_name("authentication"), None);
    }
}
