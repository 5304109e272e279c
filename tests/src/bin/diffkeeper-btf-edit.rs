//! diffkeeper-btf-edit: writes a copy of a BTF file with one struct member moved to a wrong
//! offset (see `diffkeeper_tests::btf_edit`). The VM matrix uses it for the case that must fail
//! the sidecar's canary; usable by hand to reproduce that failure anywhere.

use std::process::ExitCode;

use diffkeeper_tests::btf_edit::shift_member;

const USAGE: &str = "\
usage: diffkeeper-btf-edit IN OUT STRUCT MEMBER DELTA_BITS
  copies the BTF file IN to OUT with STRUCT.MEMBER moved by DELTA_BITS (e.g. dentry d_name 64);
  OUT stays structurally valid, so only a runtime check can notice the wrong layout";

fn run(args: &[String]) -> Result<String, String> {
    let [input, output, struct_name, member, delta] = args else {
        return Err(USAGE.to_string());
    };
    let delta: i64 = delta
        .parse()
        .map_err(|_| format!("DELTA_BITS {delta:?} is not an integer\n{USAGE}"))?;
    let mut btf = std::fs::read(input).map_err(|e| format!("cannot read {input}: {e}"))?;
    let old =
        shift_member(&mut btf, struct_name, member, delta).map_err(|e| format!("{input}: {e}"))?;
    std::fs::write(output, &btf).map_err(|e| format!("cannot write {output}: {e}"))?;
    Ok(format!(
        "{output}: {struct_name}.{member} moved by {delta} bits (was at bit offsets {old:?})"
    ))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    match run(&args) {
        Ok(done) => {
            eprintln!("diffkeeper-btf-edit: {done}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("diffkeeper-btf-edit: {e}");
            ExitCode::from(2)
        }
    }
}
