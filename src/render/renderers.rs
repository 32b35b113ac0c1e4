//! The renderers: one pure function per file kind, exact text from the secret, salts and
//! settings.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Result};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::manifest::{Renderer, Scalar};

use super::{RenderInput, HEADER, RPC_PORT, ZMQ_RAWBLOCK_PORT, ZMQ_RAWTX_PORT};

/// `rpcauth=<user>:<salt>$<hmac>` as Bitcoin Core's share/rpcauth/rpcauth.py computes it:
/// HMAC-SHA256 keyed with the salt *string*, over the password, hex encoded.
pub fn rpcauth_line(user: &str, salt: &str, password: &str) -> String {
    format!("rpcauth={user}:{salt}${}", rpcauth_hmac(salt, password))
}

pub(super) fn rpcauth_hmac(salt: &str, password: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(salt.as_bytes()).expect("HMAC accepts any key length");
    mac.update(password.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

pub(super) fn check_setting(key: &str, value: &Scalar) -> Result<()> {
    if key.is_empty()
        || !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        bail!("setting `{key}`: keys may only contain letters, digits, `_`, `.` and `-`");
    }
    if value.0.contains(['\n', '\r', '\0']) {
        bail!("setting `{key}`: value must be on one line");
    }
    Ok(())
}

/// Render one config file's content.
pub fn render(
    renderer: Renderer,
    settings: &BTreeMap<String, Scalar>,
    input: &RenderInput<'_>,
) -> Result<String> {
    for (key, value) in settings {
        check_setting(key, value)?;
    }
    let mut out = String::from(HEADER);
    match renderer {
        Renderer::BitcoinConf => render_bitcoin_conf(&mut out, settings, input)?,
        Renderer::LndConf => render_lnd_conf(&mut out, settings, input)?,
        Renderer::ElectrumxEnv => render_electrumx_env(&mut out, settings, input)?,
        Renderer::NginxUiConf => render_nginx_ui(&mut out, settings, input)?,
        Renderer::ContainersConf => render_containers_conf(&mut out, settings, input)?,
    }
    Ok(out)
}

pub(super) fn render_bitcoin_conf(
    out: &mut String,
    settings: &BTreeMap<String, Scalar>,
    input: &RenderInput<'_>,
) -> Result<()> {
    let s = input.secret;
    let mut lines: BTreeMap<String, String> = BTreeMap::new();
    lines.insert("server".into(), "1".into());
    lines.insert("rpcbind".into(), "0.0.0.0".into());
    lines.insert("rpcport".into(), RPC_PORT.to_string());
    lines.insert(
        "zmqpubrawblock".into(),
        format!("tcp://0.0.0.0:{ZMQ_RAWBLOCK_PORT}"),
    );
    lines.insert(
        "zmqpubrawtx".into(),
        format!("tcp://0.0.0.0:{ZMQ_RAWTX_PORT}"),
    );
    for (key, value) in settings {
        if matches!(
            key.as_str(),
            "rpcauth" | "rpcuser" | "rpcpassword" | "rpcwhitelist" | "rpcwhitelistdefault"
        ) {
            bail!("setting `{key}`: RPC credentials come from the canonical secret only");
        }
        lines.insert(key.clone(), value.0.clone());
    }
    // The canonical user keeps full access (the operator's bitcoin-cli); each consumer
    // gets its own user limited to its whitelist (crate::rpc_users).
    out.push_str(&rpcauth_line(&s.user, input.salt, &s.password));
    out.push('\n');
    // One user per app; an app that is several kinds of consumer gets the union (Core
    // intersects repeated rpcwhitelist lines of one user, so there is exactly one).
    let mut users: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for consumer in input.consumers {
        if consumer.name == s.user {
            bail!(
                "app `{}` has the canonical RPC user's name; rename the app or the secret's user",
                consumer.name
            );
        }
        if consumer.name == crate::rpc_users::PROBE_USER
            && consumer.kind != crate::rpc_users::ConsumerKind::Probe
        {
            bail!(
                "app `{}` has the name of archy's own probe RPC user; rename the app",
                consumer.name
            );
        }
        users
            .entry(&consumer.name)
            .or_default()
            .extend(consumer.kind.whitelist());
    }
    for name in users.keys() {
        let password = crate::rpc_users::consumer_password(s, name);
        let salt = input
            .user_salts
            .get(*name)
            .map_or(input.salt, String::as_str);
        out.push_str(&rpcauth_line(name, salt, &password));
        out.push('\n');
    }
    if !users.is_empty() {
        out.push_str("rpcwhitelistdefault=0\n");
    }
    for (name, calls) in &users {
        let calls: Vec<&str> = calls.iter().copied().collect();
        out.push_str(&format!("rpcwhitelist={name}:{}\n", calls.join(",")));
    }
    out.push_str("rpcallowip=127.0.0.1\n");
    out.push_str(&format!("rpcallowip={}\n", input.subnet));
    for (key, value) in lines {
        out.push_str(&format!("{key}={value}\n"));
    }
    Ok(())
}

pub(super) fn render_lnd_conf(
    out: &mut String,
    settings: &BTreeMap<String, Scalar>,
    input: &RenderInput<'_>,
) -> Result<()> {
    let s = input.secret;
    let host = input.bitcoin_host;
    let mut sections: BTreeMap<&str, BTreeMap<String, String>> = BTreeMap::new();
    let bitcoind = sections.entry("Bitcoind").or_default();
    bitcoind.insert("bitcoind.rpchost".into(), format!("{host}:{RPC_PORT}"));
    bitcoind.insert("bitcoind.rpcuser".into(), input.app.to_string());
    bitcoind.insert(
        "bitcoind.rpcpass".into(),
        crate::rpc_users::consumer_password(s, input.app),
    );
    bitcoind.insert(
        "bitcoind.zmqpubrawblock".into(),
        format!("tcp://{host}:{ZMQ_RAWBLOCK_PORT}"),
    );
    bitcoind.insert(
        "bitcoind.zmqpubrawtx".into(),
        format!("tcp://{host}:{ZMQ_RAWTX_PORT}"),
    );
    for (key, value) in settings {
        if matches!(key.as_str(), "bitcoind.rpcuser" | "bitcoind.rpcpass") {
            bail!("setting `{key}`: RPC credentials come from the canonical secret only");
        }
        let section = match key.split_once('.') {
            Some(("bitcoind", _)) => "Bitcoind",
            Some(("bitcoin", _)) => "Bitcoin",
            _ => "Application Options",
        };
        sections
            .entry(section)
            .or_default()
            .insert(key.clone(), value.0.clone());
    }
    // lnd reads [Application Options] first by convention; the rest alphabetically.
    let order: Vec<&str> = std::iter::once("Application Options")
        .chain(
            sections
                .keys()
                .copied()
                .filter(|k| *k != "Application Options"),
        )
        .collect();
    let mut first = true;
    for name in order {
        let Some(entries) = sections.get(name) else {
            continue;
        };
        if !first {
            out.push('\n');
        }
        first = false;
        out.push_str(&format!("[{name}]\n"));
        for (key, value) in entries {
            out.push_str(&format!("{key}={value}\n"));
        }
    }
    Ok(())
}

pub(super) fn render_electrumx_env(
    out: &mut String,
    settings: &BTreeMap<String, Scalar>,
    input: &RenderInput<'_>,
) -> Result<()> {
    let s = input.secret;
    let host = input.bitcoin_host;
    out.push_str(&format!(
        "DAEMON_URL=http://{}:{}@{host}:{RPC_PORT}/\n",
        input.app,
        crate::rpc_users::consumer_password(s, input.app)
    ));
    // ElectrumX 2.x refuses to start without DB_ENGINE (e-x 2.0.0
    // src/electrumx/server/env.py, db_engine_enum); leveldb was 1.x's default, so a
    // database synced by an older image stays readable.
    if !settings.contains_key("DB_ENGINE") {
        out.push_str("DB_ENGINE=leveldb\n");
    }
    for (key, value) in settings {
        if key == "DAEMON_URL" {
            bail!("setting `DAEMON_URL`: it is derived from the canonical secret");
        }
        out.push_str(&format!("{key}={value}\n"));
    }
    Ok(())
}

/// Host names a UI always answers to: the loopback names its published port is reached by.
const UI_LOOPBACK_NAMES: &[&str] = &["localhost", "127.0.0.1", "[::1]"];

/// nginx `server` block for a UI companion (read from /etc/nginx/conf.d/default.conf by the
/// official image: nginxinc/docker-nginx entrypoint/10-listen-on-ipv6-by-default.sh names that
/// file, and the image's nginx.conf includes conf.d/*.conf). Serves the release's static files
/// to its own Host names only (loopback and the `server_names` setting; any other name, as a
/// DNS-rebinding page sends, gets 421 from a catch-all server); with `rpc_path`, proxies POSTs
/// on that path to bitcoind as the app's own RPC user, replacing whatever Authorization header
/// the client sent, and only same-origin `application/json` requests (see `rpc_location`).
pub(super) fn render_nginx_ui(
    out: &mut String,
    settings: &BTreeMap<String, Scalar>,
    input: &RenderInput<'_>,
) -> Result<()> {
    for key in settings.keys() {
        if !matches!(
            key.as_str(),
            "rpc_path" | "root" | "listen" | "server_names"
        ) {
            bail!(
                "setting `{key}`: nginx-ui.conf knows only rpc_path, root, listen and server_names"
            );
        }
    }
    let root = settings
        .get("root")
        .map_or("/usr/share/nginx/html", |s| s.0.as_str());
    let listen = settings.get("listen").map_or("80", |s| s.0.as_str());
    let safe = |v: &str| {
        !v.is_empty()
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'.' | b':'))
    };
    if !root.starts_with('/') || !safe(root) {
        bail!("setting `root`: `{root}` must be an absolute path of [A-Za-z0-9/_.-]");
    }
    if !safe(listen) {
        bail!("setting `listen`: `{listen}` must be a port or address:port");
    }
    let mut names: Vec<&str> = UI_LOOPBACK_NAMES.to_vec();
    if let Some(listed) = settings.get("server_names") {
        for name in listed.0.split_whitespace() {
            let host = name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'));
            if !host || name.starts_with(['-', '.']) {
                bail!(
                    "setting `server_names`: `{name}` must be a host name of [A-Za-z0-9.-] (names separated by spaces)"
                );
            }
            names.push(name);
        }
    }
    out.push_str(&format!(
        "# Any other Host (a DNS-rebinding page, a name this node does not serve): 421.\nserver {{\n    listen {listen} default_server;\n    server_name _;\n    return 421;\n}}\n\nserver {{\n    listen {listen};\n    server_name {names};\n    root {root};\n    index index.html;\n\n    location / {{\n        try_files $uri $uri/ /index.html;\n    }}\n",
        names = names.join(" "),
    ));
    if let Some(path) = settings.get("rpc_path") {
        let path = path.0.as_str();
        if !path.starts_with('/') || !safe(path) {
            bail!("setting `rpc_path`: `{path}` must be an absolute URL path of [A-Za-z0-9/_.-]");
        }
        rpc_location(out, path, input);
    }
    out.push_str("}\n");
    Ok(())
}

/// The RPC proxy location. A web page of another origin must not reach bitcoind through it:
/// a browser sends `Origin` (and `Sec-Fetch-Site`) with every cross-origin POST, so anything
/// but this page's own origin is refused (403); requiring `Content-Type: application/json`
/// means a cross-origin page would need a CORS preflight, which is never granted (OPTIONS is
/// not POST). Batches are not parsed here (nginx cannot read the body before proxying without
/// a module the image does not load): bitcoind checks every call of a batch against the
/// user's rpcwhitelist and refuses the whole batch (403) if one is not on it (Bitcoin Core
/// src/httprpc.cpp, HTTPReq_JSONRPC), so a batch passes only when every method is the UI's.
fn rpc_location(out: &mut String, path: &str, input: &RenderInput<'_>) {
    let password = crate::rpc_users::consumer_password(input.secret, input.app);
    let token = crate::rpc_users::basic_token(input.app, &password);
    out.push_str(&format!(
        "\n    # bitcoind JSON-RPC as user `{app}` (its rpcwhitelist is in bitcoin.conf). The\n    # client's own Authorization header is replaced, never passed on. Same-origin JSON only.\n    location = {path} {{\n        limit_except POST {{ deny all; }}\n        set $archy_cross_origin 1;\n        if ($http_origin = \"\") {{ set $archy_cross_origin 0; }}\n        if ($http_origin = \"http://$http_host\") {{ set $archy_cross_origin 0; }}\n        if ($http_origin = \"https://$http_host\") {{ set $archy_cross_origin 0; }}\n        if ($http_sec_fetch_site !~ \"^(|same-origin)$\") {{ set $archy_cross_origin 1; }}\n        if ($archy_cross_origin) {{ return 403; }}\n        if ($content_type !~* \"^application/json *(;.*)?$\") {{ return 415; }}\n        client_max_body_size 1m;\n        proxy_pass http://{host}:{RPC_PORT}/;\n        proxy_set_header Authorization \"Basic {token}\";\n        proxy_set_header Cookie \"\";\n        proxy_set_header Origin \"\";\n    }}\n",
        app = input.app,
        host = input.bitcoin_host,
    ));
}

#[allow(clippy::unnecessary_wraps)] // every renderer has the same signature
pub(super) fn render_containers_conf(
    out: &mut String,
    settings: &BTreeMap<String, Scalar>,
    input: &RenderInput<'_>,
) -> Result<()> {
    out.push_str("[containers]\n");
    out.push_str(&format!(
        "host_containers_internal_ip = \"{}\"\n",
        input.gateway
    ));
    for (key, value) in settings {
        out.push_str(&format!(
            "{key} = \"{}\"\n",
            value.0.replace('\\', "\\\\").replace('"', "\\\"")
        ));
    }
    Ok(())
}
