//! With the `embed-site` feature the site folder (`WAYMARK_EMBED_SITE`) is
//! compiled into the binary (`src/ops/site.rs`): build again when the
//! variable or any file under it changes (a file added or removed too,
//! which the embedding alone would not notice). Without the feature this
//! does nothing, and nothing is rebuilt.

fn main() {
    println!("cargo:rerun-if-env-changed=WAYMARK_EMBED_SITE");
    if std::env::var_os("CARGO_FEATURE_EMBED_SITE").is_some() {
        match std::env::var("WAYMARK_EMBED_SITE") {
            Ok(dir) => println!("cargo:rerun-if-changed={dir}"),
            Err(_) => panic!("the embed-site feature needs WAYMARK_EMBED_SITE: the site folder to embed (`make dist` sets it)"),
        }
    }
}
