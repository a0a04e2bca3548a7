//! A person at a terminal: a command run on a pseudo-terminal (`script`,
//! util-linux), whose screen the test reads and whose keyboard it types on.

use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use super::Run;

/// Run `command` on a pseudo-terminal. `act` sees the screen: every line
/// (`complete`), and the unfinished last line each time it grows (a prompt
/// waits without a newline); what it returns is typed, followed by Enter. Returns the
/// command's exit status with the whole screen as the [`Run`]'s stderr
/// (audited like any log: typed secrets must not have been echoed).
pub fn on_terminal(command: &Command, mut act: impl FnMut(&str, bool) -> Option<String> + Send + 'static) -> Run {
    let line = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a| format!("'{}'", a.to_str().expect("utf-8").replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ");
    let mut script = Command::new("script");
    // -f: flush as it comes (the test answers prompts); -e: its exit status.
    script.args(["-qfec", &line, "/dev/null"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null());
    for (name, value) in command.get_envs() {
        match value {
            Some(value) => script.env(name, value),
            None => script.env_remove(name),
        };
    }
    let mut child = script.spawn().expect("script (util-linux)");
    let keyboard = Arc::new(Mutex::new(child.stdin.take().expect("stdin")));
    let mut screen = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let (mut all, mut current) = (String::new(), String::new());
        let mut buffer = [0u8; 4096];
        while let Ok(read) = screen.read(&mut buffer) {
            if read == 0 {
                break;
            }
            let text = without_escapes(&String::from_utf8_lossy(&buffer[..read]).replace('\r', ""));
            all.push_str(&text);
            let mut typed = Vec::new();
            for c in text.chars() {
                if c == '\n' {
                    typed.extend(act(&current, true));
                    current.clear();
                } else {
                    current.push(c);
                }
            }
            if !current.is_empty() {
                typed.extend(act(&current, false));
            }
            for answer in typed {
                let mut keyboard = keyboard.lock().unwrap();
                let _ = keyboard.write_all(format!("{answer}\n").as_bytes());
                let _ = keyboard.flush();
            }
        }
        all
    });
    let status = child.wait().expect("script");
    let screen = reader.join().expect("screen reader");
    Run::of(Output { status, stdout: Vec::new(), stderr: screen.into_bytes() })
}

/// `text` without ANSI CSI sequences (`ESC [ ... letter`: the bold of a
/// framed message on a terminal), as a person reads it.
fn without_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}
