//! Integration tests: the real `duet` binary, run in temporary directories, asserting exit
//! codes, stdout and stderr as a user sees them. One test binary (CI builds one, not many).

mod checks;
mod cli;
mod compile;
mod console;
mod crash;
mod formats;
mod hints;
mod hostile;
mod leftovers;
mod linux;
mod linux_systemd;
mod machine;
mod names;
mod operator;
mod outputs;
mod repair;
mod report;
mod run;
mod soak;
mod special_files;
mod storage;
mod support;
mod templates;
mod terminal;
mod unattended;
mod unattended_compile;
