//! Parser tests: errors name the instruction and its line.

use super::inst::{Addr, AddrBase, Op, Space};
use super::*;

#[test]
fn unknown_instruction_names_it_and_its_line() {
    let ptx = ".version 7.0\n.target sm_70\n.address_size 64\n\
.visible .entry k(\n\t.param .u32 k_param_0\n)\n{\n\t.reg .b32 %r<3>;\n\
\tld.param.b32 %r1, [k_param_0];\n\tpopc.b32 %r2, %r1;\n\tret;\n}\n";
    let e = parse_module(ptx).unwrap_err();
    assert_eq!(e.line, 10, "{e}");
    assert!(e.message.contains("popc.b32"), "{e}");
    let e =
        parse_module(&ptx.replace("popc.b32 %r2, %r1", "add.rz.f32 %r2, %r1, %r1")).unwrap_err();
    assert!(e.message.contains("rounding"), "{e}");
    let e =
        parse_module(&ptx.replace("popc.b32 %r2, %r1", "add.ftz.f32 %r2, %r1, %r1")).unwrap_err();
    assert!(e.message.contains(".ftz"), "{e}");
}

#[test]
fn params_globals_and_labels() {
    let ptx = ".version 7.0\n.target sm_70\n\
.global .align 8 .b8 tab[8] = {1, 2, 3, 4, 5, 6, 7, 8};\n\
.extern .shared .align 8 .b8 dyn[];\n\
.visible .entry k(\n\t.param .align 4 .b8 k_param_0[12],\n\t.param .align 8 .b8 k_param_1[16],\n\t.param .u32 k_param_2\n)\n{\n\
\t.reg .pred %p<2>;\n\t.reg .b32 %r<3>;\n\t.loc 1 5 3\n$L0:\n\tld.param.b32 %r1, [k_param_2];\n\
\tsetp.eq.b32 %p1, %r1, 0;\n\t@!%p1 bra $L0;\n\tret;\n}\n\t.file 1 \"/x/kernels-gpu/src/a.rs\"\n";
    let m = parse_module(ptx).unwrap();
    let k = m.kernel("k").unwrap();
    assert_eq!(
        k.params,
        [
            ParamDecl { size: 12, align: 4 },
            ParamDecl { size: 16, align: 8 },
            ParamDecl { size: 4, align: 4 }
        ]
    );
    assert_eq!(k.param_offsets, [0, 16, 32]);
    assert_eq!(k.param_bytes, 36);
    assert_eq!(m.globals[0].bytes, [1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(m.shared[0].size, None);
    assert!(matches!(
        k.insts[0].op,
        Op::Ld {
            space: Space::Param,
            addr: Addr {
                base: AddrBase::Param(32),
                ..
            },
            ..
        }
    ));
    assert!(matches!(k.insts[2].op, Op::Bra { target: 0 }));
    assert_eq!(k.insts[2].guard.map(|g| g.1), Some(true));
    assert_eq!(
        m.source_line(k.pos[0].loc).as_deref(),
        Some("kernels-gpu/src/a.rs:5")
    );
}
