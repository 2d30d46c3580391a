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
//! FFMA density of one K stage, forward / input grad / weight grad (static SASS of
//! ptxas 12.9 for sm_80, counted by `lsoftmax ptx --sass` on 2026-12-07; no GPU ran):
//! base 0.444 / 0.390 / 0.348; `_unrolled` 0.723 / 0.721 / 0.725; `_micro8` 0.838 /
//! 0.838 / 0.843; `_ldg` 0.881 / 0.866 / 0.853; `_dbuf` 0.874 / 0.856 / 0.846. Not a
//! timing: `_dbuf` has one barrier per stage instead of two for a few more instructions,
//! which a static count does not credit.
//!
//! Each kernel file declares its kernel once with [`ladder_kernels!`]: the parameter list
//! (the launch ABI every variant shares), the base kernel's body, and one generic body
//! `<const M: usize, const STAGES: usize, const LDG: bool>` (thread-tile side, shared
//! stages, `ld.global.nc` or not) from which the macro emits the four other entries,
//! with their doc comments, as in the table above.

/// Emits one kernel of the ladder: its base entry, its generic body and the four ladder
/// entries built on that body.
///
/// ```text
/// ladder_kernels! {
///     params(p: ForwardParams, x: Global<f32>, …);
///     /// docs of the base kernel
///     base margin_forward { … }
///     /// docs of the generic body
///     variants forward_tiled<M, STAGES, LDG> { … }
///     vector_loads_when: "`D` is a multiple of 4";   // for the `_ldg` docs
///     thread_tile_in_runs: margin_forward_unrolled;  // each entry under the level it changes
///     block_tile_128: margin_forward_micro8;
///     global_loads_nc: margin_forward_ldg;
///     shared_double_buffered: margin_forward_dbuf;
/// }
/// ```
macro_rules! ladder_kernels {
    (
        params($($arg:ident : $ty:ty),* $(,)?);
        $(#[$base_meta:meta])*
        base $base:ident $base_body:block
        $(#[$body_meta:meta])*
        variants $body:ident<$m:ident, $stages:ident, $ldg_flag:ident> $tiled_body:block
        vector_loads_when: $when:literal;
        thread_tile_in_runs: $unrolled:ident;
        block_tile_128: $micro8:ident;
        global_loads_nc: $ldg:ident;
        shared_double_buffered: $dbuf:ident $(;)?
    ) => {
        $crate::kernel! {
            $(#[$base_meta])*
            pub fn $base($($arg: $ty),*) $base_body
        }

        $(#[$body_meta])*
        #[inline(always)]
        #[allow(clippy::too_many_arguments)]
        fn $body<const $m: usize, const $stages: usize, const $ldg_flag: bool>(
            $($arg: $ty),*
        ) $tiled_body

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
