//! The kernel ladder: the variants of the three GEMM kernels (forward, input gradient,
//! weight gradient), each one step from the previous and changing one level of the tile
//! hierarchy ([`crate::mainloop`]). Every variant computes bit-identical results; only
//! speed differs. The PTX entry names are the ABI the host launches by.
//!
//! | entry suffix | level changed | block tile | thread tile | stage | shared stages | global loads |
//! |---|---|---|---|---|---|---|
//! | (none) | the base kernel | 64×64 | 4×4 strided, scalar shared loads | 16 | 1 + register prefetch | generic scalar |
//! | `_unrolled` | thread tile ↔ shared memory | 64×64 | 4×4 in runs of 4, 128-bit shared loads, stage unrolled | 16 | 1 + register prefetch | generic scalar |
//! | `_micro8` | block tile and thread tile | 128×128 | 8×8 in runs of 4 | 8 | 1 + register prefetch | generic scalar |
//! | `_ldg` | global loads | 128×128 | 8×8 | 8 | 1 + register prefetch | `ld.global.nc`, 128-bit where aligned |
//! | `_dbuf` | shared staging (pipelining) | 128×128 | 8×8 | 8 | 2 (double-buffered) | `ld.global.nc`, 128-bit where aligned |
//!
//! Each kernel file writes its base kernel by hand and one generic body
//! `<const M: usize, const STAGES: usize, const LDG: bool>` (thread-tile side, shared
//! stages, `ld.global.nc` or not); [`ladder_kernels!`] emits the four other entries
//! from it, with their doc comments, from the table above.

/// Emits the four ladder entries of one kernel from its generic body.
///
/// `base` is the base kernel (for the docs), `body` the generic body with the entries'
/// parameter list (every entry has the base kernel's parameters), `vector_loads_when` the
/// condition for 128-bit global loads (docs), then the four entry names, each under the
/// level it changes.
macro_rules! ladder_kernels {
    (
        base: $base:ident,
        body: $body:ident($($arg:ident : $ty:ty),* $(,)?),
        vector_loads_when: $when:literal,
        thread_tile_in_runs: $unrolled:ident,
        block_tile_128: $micro8:ident,
        global_loads_nc: $ldg:ident,
        shared_double_buffered: $dbuf:ident $(,)?
    ) => {
        $crate::kernel! {
            #[doc = concat!(
                "[`", stringify!($base), "`] with the **thread tile** held in runs of 4 ",
                "adjacent outputs, so that each operand fragment is one 128-bit shared load, ",
                "and the stage unrolled by construction with `u32` counters. Block tile 64×64, ",
                "4×4 thread tile, 16-deep stage, one shared stage with register prefetch and ",
                "generic scalar global loads, as the base kernel. Same arguments and results."
            )]
            pub fn $unrolled($($arg: $ty),*) {
                $body::<4, 1, false>($($arg),*);
            }

            #[doc = concat!(
                "[`", stringify!($unrolled), "`] with a larger **block tile and thread ",
                "tile**: 128×128 block tile, 8×8 thread tile, 8-deep stage (twice the FFMAs ",
                "per shared byte). Same arguments and results."
            )]
            pub fn $micro8($($arg: $ty),*) {
                $body::<8, 1, false>($($arg),*);
            }

            #[doc = concat!(
                "[`", stringify!($micro8), "`] with its **global loads** through ",
                "`ld.global.nc`, 128-bit when ", $when, " and the buffers are 16-byte ",
                "aligned (scalar otherwise). Same arguments and results."
            )]
            pub fn $ldg($($arg: $ty),*) {
                $body::<8, 1, true>($($arg),*);
            }

            #[doc = concat!(
                "[`", stringify!($ldg), "`] with double-buffered **shared staging**: two ",
                "shared stages, the next one stored while the current one is read, one ",
                "barrier per stage instead of two. Same arguments and results."
            )]
            pub fn $dbuf($($arg: $ty),*) {
                $body::<8, 2, true>($($arg),*);
            }
        }
    };
}
pub(crate) use ladder_kernels;
