//! `radlens serve`: the HTTP API and dashboard over a folder of run directories.

use crate::cli::ServeCmd;
use crate::server::{ServeOptions, parse_models, serve_blocking};

pub fn run(cmd: &ServeCmd) -> anyhow::Result<()> {
    let mut opts = ServeOptions::new(&cmd.runs);
    opts.host = cmd.host.clone();
    opts.port = cmd.port;
    opts.images = cmd.images.clone();
    opts.models = parse_models(&cmd.model)?;
    opts.dist = cmd.dist.clone();
    opts.rotate_share_key = cmd.rotate_share_key;
    serve_blocking(opts)
}
