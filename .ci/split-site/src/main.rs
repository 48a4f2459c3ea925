//! Splits the frontend's wasm at its `#[lazy]` split points, before
//! wasm-bindgen runs: `split-site INPUT.wasm PKG_DIR NAME`.
//!
//! It writes `PKG_DIR/NAME_split.wasm` (the main module, for wasm-bindgen),
//! one `.wasm` per split chunk, the loader script and
//! `__wasm_split_manifest.json` (split point -> the chunk files it needs),
//! under the names Leptos's `HydrationScripts` looks for, so the server
//! can preload the chunks a page will ask for.

use std::{collections::BTreeMap, path::Path, process::ExitCode};

/// The loader's file name `HydrationScripts` expects when files are not hashed.
const LOADER: &str = "__wasm_split.______________________.js";
const MANIFEST: &str = "__wasm_split_manifest.json";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, pkg_dir, name] = args.as_slice() else {
        eprintln!("usage: split-site INPUT.wasm PKG_DIR NAME");
        return ExitCode::from(2);
    };
    match split(Path::new(input), Path::new(pkg_dir), name) {
        Ok(chunks) => {
            println!("split {input}: {chunks} chunk(s) into {pkg_dir}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("split-site: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn split(input: &Path, pkg_dir: &Path, name: &str) -> Result<usize, Box<dyn std::error::Error>> {
    let wasm = std::fs::read(input).map_err(|e| format!("reading {}: {e}", input.display()))?;
    std::fs::create_dir_all(pkg_dir)?;
    let main_out = pkg_dir.join(format!("{name}_split.wasm"));
    let main_module = format!("./{name}.js");
    let link_name = format!("./{LOADER}");
    let mut options = wasm_split_cli_support::Options::new(&wasm);
    options.output_dir = pkg_dir;
    options.main_out_path = &main_out;
    options.main_module = &main_module;
    options.link_name = &link_name;
    let result = wasm_split_cli_support::transform(options).map_err(|e| format!("{e:?}"))?;
    // Sorted, so the manifest is the same from one build to the next.
    let manifest: BTreeMap<_, _> = result.prefetch_map.into_iter().collect();
    std::fs::write(pkg_dir.join(MANIFEST), serde_json::to_string_pretty(&manifest)?)?;
    Ok(result.split_modules.len())
}
