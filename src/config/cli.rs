//! The command line: Mosquitto's flags (`-c`, `-p`, `-v`) plus Culex's own (`--shards`,
//! `--cpus`). Values are checked here, so `Settings::load` only has to combine them.

use std::path::PathBuf;

use super::cpus::CpuList;

/// Mosquitto accepts `-p` at most this many times; so does Culex.
pub const CLI_PORTS_MAX: usize = 10;

/// `culex [-c FILE] [-p PORT]... [-v] [--shards N] [--cpus LIST]`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Parser)]
#[command(
    name = "culex",
    version,
    about = "A thread-per-core MQTT 3.1/3.1.1/5.0 broker, a drop-in replacement for Mosquitto"
)]
pub struct Cli {
    /// Load configuration from FILE (mosquitto.conf syntax). Without one, listen on the
    /// loopback interface only and allow anonymous clients, as Mosquitto 2 does.
    #[arg(short = 'c', long = "config-file", value_name = "FILE")]
    pub config_file: Option<PathBuf>,

    /// Listen on PORT on the loopback interface (up to 10 times). Ignored, as by Mosquitto,
    /// when the configuration file defines listeners.
    #[arg(short = 'p', long = "port", value_name = "PORT",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Vec<u16>,

    /// Verbose logging: every log type, to stderr, overriding the file's logging options.
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,

    /// Number of shards (one executor thread each). Default: one per CPU this process
    /// may run on.
    #[arg(long = "shards", value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub shards: Option<u16>,

    /// CPUs to pin shards to, e.g. "0-3,6". Default: every CPU this process may run on.
    #[arg(long = "cpus", value_name = "LIST", value_parser = CpuList::parse)]
    pub cpus: Option<CpuList>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Cli, String> {
        Cli::try_parse_from(std::iter::once("culex").chain(args.iter().copied()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn no_flags() {
        let cli = parse(&[]).expect("no flags is valid");
        assert_eq!(
            cli,
            Cli {
                config_file: None,
                port: vec![],
                verbose: false,
                shards: None,
                cpus: None
            }
        );
    }

    #[test]
    fn every_flag_short_and_long() {
        let short = parse(&["-c", "/etc/m.conf", "-p", "1884", "-p", "1885", "-v"])
            .expect("valid short flags");
        let long = parse(&[
            "--config-file",
            "/etc/m.conf",
            "--port",
            "1884",
            "--port=1885",
            "--verbose",
        ])
        .expect("valid long flags");
        assert_eq!(short, long);
        assert_eq!(short.config_file, Some(PathBuf::from("/etc/m.conf")));
        assert_eq!(short.port, vec![1884, 1885]);
        assert!(short.verbose);

        let culex = parse(&["--shards", "4", "--cpus", "0-3,6"]).expect("valid Culex flags");
        assert_eq!(culex.shards, Some(4));
        assert_eq!(culex.cpus.map(CpuList::into_vec), Some(vec![0, 1, 2, 3, 6]));
    }

    #[test]
    fn bad_values_are_refused() {
        for (args, needle) in [
            (&["-p", "0"][..], "0 is not in 1..=65535"),
            (&["-p", "65536"][..], "65536 is not in 1..=65535"),
            (&["-p", "x"][..], "invalid digit"),
            (&["-p"][..], "a value is required"),
            (&["--shards", "0"][..], "0 is not in 1..=65535"),
            (&["--cpus", "3-1"][..], "range '3-1' runs backwards"),
            (&["--cpus", "0,0"][..], "CPU 0 appears twice"),
            (&["-d"][..], "unexpected argument '-d'"),
            (&["-c"][..], "a value is required"),
        ] {
            let err = parse(args).expect_err("bad flags must fail");
            assert!(err.contains(needle), "{args:?}: {err}");
        }
    }

    #[test]
    fn help_and_version_are_clap_displays() {
        let help = Cli::try_parse_from(["culex", "-h"]).expect_err("-h stops parsing");
        assert_eq!(help.kind(), clap::error::ErrorKind::DisplayHelp);
        assert!(help.to_string().contains("--config-file <FILE>"));
        let version = Cli::try_parse_from(["culex", "-V"]).expect_err("-V stops parsing");
        assert_eq!(version.kind(), clap::error::ErrorKind::DisplayVersion);
        assert!(version.to_string().contains(env!("CARGO_PKG_VERSION")));
    }
}
