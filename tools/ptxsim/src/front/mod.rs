//! The PTX front end: PTX text to a [`Module`] of decoded kernels. Nothing here executes.
//!
//! - [`module`]: module-level directives (`.target`, `.file`, `.global` and `.shared`
//!   variables, `.entry` parameter lists) and the [`Module`]/[`Kernel`] types;
//! - `body`: one kernel body (register declarations, nested scopes, labels, `.loc`);
//! - `operands` and `decode`: one instruction statement to an [`Inst`];
//! - [`inst`]: the decoded instruction set the machine executes.
//!
//! The parser accepts the PTX that rustc's NVPTX backend emits and a hand-edited variant of
//! it. Anything it does not understand (an instruction, a modifier, a directive inside a
//! kernel) is an error naming it and its line: never a guess.

mod body;
mod decode;
pub mod inst;
pub mod module;
mod operands;
#[cfg(test)]
mod tests;

pub use inst::Inst;
pub use module::{
    GlobalVar, Kernel, Module, ParamDecl, SharedVar, SourcePos, entry_params, parse_module,
};

/// A parse or decode error: the PTX line (1-based) and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Line in the PTX text.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PTX line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

type PResult<T> = std::result::Result<T, ParseError>;

fn err<T>(line: usize, message: impl Into<String>) -> PResult<T> {
    Err(ParseError {
        line,
        message: message.into(),
    })
}
