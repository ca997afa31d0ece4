//! `radlens serve`: the HTTP API and dashboard over a folder of run directories.

use crate::cli::{ModelSpec, ServeCmd};
use crate::error::InputError;
use crate::server::{ServeOptions, serve_blocking};

pub fn run(cmd: &ServeCmd) -> anyhow::Result<()> {
    // Jobs and compare load models long after start-up: a missing folder is refused now.
    if let Some(m) = cmd.model.iter().find(|m| !m.dir.is_dir()) {
        return Err(InputError::Flag {
            flag: "--model",
            message: format!("{}={}: {} is not a folder", m.name, m.dir.display(), m.dir.display()),
        }
        .into());
    }
    let mut opts = ServeOptions::new(&cmd.runs);
    opts.host = cmd.host.clone();
    opts.port = cmd.port;
    opts.images = cmd.images.clone();
    opts.models = ModelSpec::pairs(&cmd.model);
    opts.dist = cmd.dist.clone();
    opts.rotate_share_key = cmd.rotate_share_key;
    serve_blocking(opts)
}
