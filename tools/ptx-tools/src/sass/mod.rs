//! SASS text as `cuobjdump -sass` prints it, parsed into functions and instructions, and
//! the tools that produce it: `ptxas` assembles the PTX to a cubin, `cuobjdump -sass`
//! disassembles the cubin.
//!
//! One instruction per line, after its byte address in a comment; the encoding follows
//! in comments that are skipped:
//! ```text
//!         Function : margin_forward
//!         /*0d30*/                   UIMAD UR5, UR5, 0x108, URZ ;     /* 0x000001080505789d */
//!                                                                      /* 0x000fe2000f8e023f */
//!         /*1100*/              @!P1 BRA 0xd30 ;                      /* 0xfffffc2000009947 */
//! ```

pub mod cfg;
#[cfg(test)]
mod loop_tests;
pub mod main_loop;
pub mod model;
pub mod report;

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

use crate::compile::SETUP_COMMAND;

/// One SASS instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instruction {
    /// Byte offset in the function.
    pub address: u64,
    /// Guard predicate without the `@` (`P0`, `!P1`, `!UP0`); `None` if unguarded.
    pub guard: Option<String>,
    /// Opcode with its modifiers, e.g. `LDS.U.128`.
    pub opcode: String,
    /// Operands as printed, comma-separated, trimmed.
    pub operands: Vec<String>,
}

impl Instruction {
    /// The opcode without modifiers: `LDS` for `LDS.U.128`.
    pub fn base(&self) -> &str {
        self.opcode.split('.').next().unwrap_or(&self.opcode)
    }

    /// Access width in bits from the opcode's modifiers: `.64`, `.128`, `.U8`/`.S8`,
    /// `.U16`/`.S16`; 32 when none is given (SASS's default).
    pub fn width_bits(&self) -> u32 {
        let mut width = 32;
        for m in self.opcode.split('.').skip(1) {
            match m {
                "64" => width = 64,
                "128" => width = 128,
                "U8" | "S8" => width = 8,
                "U16" | "S16" => width = 16,
                _ => {}
            }
        }
        width
    }

    /// `true` if the guard can be false (a guard of `PT` is always true).
    pub fn is_guarded(&self) -> bool {
        self.guard.as_deref().is_some_and(|g| g != "PT")
    }

    /// The branch target of a direct branch (`BRA`, `JMP`), if the last operand is an
    /// address.
    pub fn branch_target(&self) -> Option<u64> {
        if !matches!(self.base(), "BRA" | "JMP") {
            return None;
        }
        parse_hex(self.operands.last()?)
    }

    /// Control flow after this instruction.
    pub fn flow(&self) -> Flow {
        match self.base() {
            "BRA" | "JMP" => {
                // `@P0 BRA 0x40`, `BRA P1, 0x40`, `BRA.U !UP0, 0x40` and `BRA.DIV UR4, 0x40`
                // may fall through; a plain `BRA 0x40` may not.
                let conditional = self.is_guarded() || self.operands.len() > 1;
                match self.branch_target() {
                    Some(t) => Flow::Branch {
                        target: t,
                        falls_through: conditional,
                    },
                    None => Flow::Indirect,
                }
            }
            "BRX" | "JMX" => Flow::Indirect,
            "EXIT" | "RET" | "KILL" if !self.is_guarded() => Flow::Stop,
            _ => Flow::Next,
        }
    }
}

/// Where control goes after an instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// The next instruction (calls return here too).
    Next,
    /// A direct branch.
    Branch {
        /// Byte address of the target.
        target: u64,
        /// `true` if the branch is conditional.
        falls_through: bool,
    },
    /// A branch through a register: targets unknown.
    Indirect,
    /// The thread stops (`EXIT`, `RET`).
    Stop,
}

/// One function of a SASS listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SassFunction {
    /// The function's name as printed after `Function :`.
    pub name: String,
    /// Instructions in address order.
    pub instructions: Vec<Instruction>,
}

/// `0x1f70` (an optional trailing `;` allowed).
fn parse_hex(s: &str) -> Option<u64> {
    let s = s.trim().trim_end_matches(';').trim();
    u64::from_str_radix(s.strip_prefix("0x")?, 16).ok()
}

/// Parses one instruction line (`/*0550*/ @!P2 BRA 0x430 ; /* 0x...*/`); `None` for
/// anything else (encoding-only lines, headers, blank lines).
pub fn parse_instruction(line: &str) -> Option<Instruction> {
    let rest = line.trim_start().strip_prefix("/*")?;
    let (address, rest) = rest.split_once("*/")?;
    if address.is_empty() || !address.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let address = u64::from_str_radix(address, 16).ok()?;
    // The instruction text ends at `;` (the encoding comment follows).
    let text = rest.split(';').next()?.trim();
    // `BRA 0x100;` has no space before the `;` and is handled by the split above.
    let text = text.split("/*").next()?.trim();
    if text.is_empty() {
        return None;
    }
    let (guard, text) = match text.strip_prefix('@') {
        Some(g) => {
            let (guard, rest) = g.split_once(char::is_whitespace)?;
            (Some(guard.to_string()), rest.trim_start())
        }
        None => (None, text),
    };
    let (opcode, operands) = match text.split_once(char::is_whitespace) {
        Some((op, rest)) => (op, rest.trim()),
        None => (text, ""),
    };
    let operands = if operands.is_empty() {
        Vec::new()
    } else {
        operands.split(',').map(|o| o.trim().to_string()).collect()
    };
    Some(Instruction {
        address,
        guard,
        opcode: opcode.to_string(),
        operands,
    })
}

/// Parses the output of `cuobjdump -sass` (one or more `Function :` sections) into
/// functions in the order printed. Text before the first `Function :` is ignored.
pub fn parse_listing(text: &str) -> Vec<SassFunction> {
    let mut functions: Vec<SassFunction> = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.trim().strip_prefix("Function :") {
            functions.push(SassFunction {
                name: name.trim().to_string(),
                instructions: Vec::new(),
            });
        } else if let Some(f) = functions.last_mut()
            && let Some(i) = parse_instruction(line)
        {
            f.instructions.push(i);
        }
    }
    functions
}

/// Finds cuobjdump: `$LSOFTMAX_CUOBJDUMP`, then `cuobjdump` next to the ptxas in use
/// (the CUDA root `scripts/setup-ptx-tools` fills), then `cuobjdump` on `PATH`.
pub fn find_cuobjdump(ptxas: &Path) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("LSOFTMAX_CUOBJDUMP") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(Error::Toolchain {
                tool: "cuobjdump".into(),
                message: format!(
                    "LSOFTMAX_CUOBJDUMP={} is not a file; unset it or run `{SETUP_COMMAND}`",
                    p.display()
                ),
            })
        };
    }
    if let Some(next_to_ptxas) = ptxas.parent().map(|d| d.join("cuobjdump"))
        && next_to_ptxas.is_file()
    {
        return Ok(next_to_ptxas);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("cuobjdump"))
            .find(|p| p.is_file())
    });
    on_path.ok_or_else(|| Error::Toolchain {
        tool: "cuobjdump".into(),
        message: format!(
            "not found (looked at $LSOFTMAX_CUOBJDUMP, next to {} and on PATH); install it \
             with `{SETUP_COMMAND}`",
            ptxas.display()
        ),
    })
}

/// Runs `cuobjdump -sass <cubin>` and returns its text. cuobjdump's own notices on stderr
/// (e.g. nvdisasm's "switching to Old format") are dropped when it succeeds.
pub fn disassemble(cuobjdump: &Path, cubin: &Path) -> Result<String> {
    let output = Command::new(cuobjdump)
        .arg("-sass")
        .arg(cubin)
        .output()
        .map_err(|e| Error::Toolchain {
            tool: "cuobjdump".into(),
            message: format!(
                "cannot run {} ({e}); install it with `{SETUP_COMMAND}`",
                cuobjdump.display()
            ),
        })?;
    if !output.status.success() {
        return Err(Error::Toolchain {
            tool: "cuobjdump".into(),
            message: format!(
                "`{} -sass {}` exited with {}: {}",
                cuobjdump.display(),
                cubin.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instruction_lines_are_parsed_and_encodings_skipped() {
        let i = parse_instruction(
            "        /*0550*/              @!P2 BRA 0x430 ;                 /* 0xfffffed00000a947 */",
        )
        .unwrap();
        assert_eq!(i.address, 0x550);
        assert_eq!(i.guard.as_deref(), Some("!P2"));
        assert_eq!(i.base(), "BRA");
        assert_eq!(
            i.flow(),
            Flow::Branch {
                target: 0x430,
                falls_through: true
            }
        );
        assert!(parse_instruction("                      /* 0x000fe400078e00ff */").is_none());
        let spin =
            parse_instruction("  /*0100*/                   BRA 0x100;   /* 0xff */").unwrap();
        assert_eq!(
            spin.flow(),
            Flow::Branch {
                target: 0x100,
                falls_through: false
            }
        );
        let lds = parse_instruction("/*1b90*/ LDS.U.128 R51, [R40+UR5+0x40] ;").unwrap();
        assert_eq!((lds.base(), lds.width_bits()), ("LDS", 128));
        assert_eq!(lds.operands, ["R51", "[R40+UR5+0x40]"]);
        let ldg = parse_instruction("/*0ab0*/ @P2 LD.E R30, [R8.64+0x40] ;").unwrap();
        assert_eq!((ldg.base(), ldg.width_bits()), ("LD", 32));
        let cp = parse_instruction("/*0ab0*/ LDGSTS.E.BYPASS.LTC128B.128 [R3], [R8.64] ;").unwrap();
        assert_eq!((cp.base(), cp.width_bits()), ("LDGSTS", 128));
        let two_pred = parse_instruction("/*16e0*/ @P0 BRA P1, 0x1750 ;").unwrap();
        assert_eq!(two_pred.branch_target(), Some(0x1750));
        let exit = parse_instruction("/*00f0*/ EXIT ;").unwrap();
        assert_eq!(exit.flow(), Flow::Stop);
        let guarded_exit = parse_instruction("/*0050*/ @P0 EXIT ;").unwrap();
        assert_eq!(guarded_exit.flow(), Flow::Next);
        let uncond = parse_instruction("/*0050*/ @PT BRA 0x80 ;").unwrap();
        assert!(matches!(
            uncond.flow(),
            Flow::Branch {
                falls_through: false,
                ..
            }
        ));
        let brx = parse_instruction("/*0050*/ BRX R2 -0x60 ;").unwrap();
        assert_eq!(brx.flow(), Flow::Indirect);
    }

    #[test]
    fn listings_split_into_functions() {
        let text = "\
\tcode for sm_80
\t\tFunction : first
\t.headerflags\t@\"EF_CUDA_SM80\"
        /*0000*/                   MOV R1, c[0x0][0x28] ;       /* 0x00000a0000017a02 */
                                                                /* 0x000fe40000000f00 */
        /*0010*/                   EXIT ;                       /* 0x000000000000794d */
\t\t..........

\t\tFunction : second
        /*0000*/                   FFMA R0, R1, R2, R0 ;        /* 0x0000000201007223 */
";
        let f = parse_listing(text);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].name, "first");
        assert_eq!(f[0].instructions.len(), 2);
        assert_eq!(f[1].instructions[0].operands, ["R0", "R1", "R2", "R0"]);
    }
}
