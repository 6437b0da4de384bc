//! `dynedge-pingora`: the Pingora module as a standalone server (`--help` lists the flags).

use dynedge_pingora::standalone::{build_server, ignore_sighup_until_reload_listens, Settings};

fn main() {
    let settings = match Settings::from_args(std::env::args().skip(1)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = ignore_sighup_until_reload_listens() {
        eprintln!("dynedge-pingora: {e}");
    }
    match build_server(&settings) {
        Ok((server, _gateway)) => {
            eprintln!(
                "dynedge-pingora: serving tls {:?} plain {:?}",
                settings.tls, settings.listen
            );
            server.run_forever()
        }
        Err(e) => {
            eprintln!("dynedge-pingora: {e}");
            std::process::exit(1);
        }
    }
}
