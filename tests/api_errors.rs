//! The layer API rejects bad input with an error that names the offending value, and
//! degenerate rows stay finite.

use lsoftmax::{Error, Margin, Mode, backward, forward};
use ndarray::{Array2, arr2};

fn ok_inputs() -> (Array2<f32>, Array2<f32>, Vec<usize>) {
    (
        arr2(&[[1.0, 2.0], [3.0, -1.0]]),
        arr2(&[[0.5, 0.5], [1.0, 0.0], [0.0, 1.0]]),
        vec![2, 0],
    )
}

#[test]
fn width_mismatch_is_a_shape_error() {
    let (x, _, labels) = ok_inputs();
    let w = Array2::<f32>::zeros((3, 5));
    let err = forward(x.view(), w.view(), &labels, Margin::plain(), Mode::Train).unwrap_err();
    assert!(matches!(err, Error::Shape(_)), "{err}");
    assert!(
        err.to_string().contains("2x2") && err.to_string().contains("3x5"),
        "{err}"
    );
}

#[test]
fn label_count_and_range_are_checked() {
    let (x, w, _) = ok_inputs();
    let err = forward(x.view(), w.view(), &[0], Margin::plain(), Mode::Train).unwrap_err();
    assert!(err.to_string().contains("labels has 1 entries"), "{err}");
    let err = forward(x.view(), w.view(), &[0, 3], Margin::plain(), Mode::Train).unwrap_err();
    assert!(
        matches!(
            err,
            Error::LabelOutOfRange {
                row: 1,
                label: 3,
                classes: 3
            }
        ),
        "{err}"
    );
}

#[test]
fn non_finite_inputs_are_named_with_their_index() {
    let (mut x, w, labels) = ok_inputs();
    x[[1, 0]] = f32::NAN;
    let err = forward(x.view(), w.view(), &labels, Margin::plain(), Mode::Train).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("x holds a non-finite value NaN at index [1, 0]"),
        "{err}"
    );
    let (x, mut w, labels) = ok_inputs();
    w[[2, 1]] = f32::INFINITY;
    let err = forward(x.view(), w.view(), &labels, Margin::plain(), Mode::Train).unwrap_err();
    assert!(
        err.to_string()
            .contains("w holds a non-finite value inf at index [2, 1]"),
        "{err}"
    );
}

#[test]
fn dout_shape_and_values_are_checked() {
    let (x, w, labels) = ok_inputs();
    let fwd = forward(x.view(), w.view(), &labels, Margin::plain(), Mode::Train).unwrap();
    let err = backward(&fwd, Array2::<f32>::zeros((3, 2)).view()).unwrap_err();
    assert!(
        err.to_string()
            .contains("dout is 3x2 but the layer output is 2x3"),
        "{err}"
    );
    let mut g = Array2::<f32>::zeros((2, 3));
    g[[0, 1]] = f32::NEG_INFINITY;
    let err = backward(&fwd, g.view()).unwrap_err();
    assert!(
        err.to_string()
            .contains("dout holds a non-finite value -inf at index [0, 1]"),
        "{err}"
    );
}

#[test]
fn empty_inputs_are_rejected() {
    let x = Array2::<f32>::zeros((0, 2));
    let w = Array2::<f32>::zeros((3, 2));
    let err = forward(x.view(), w.view(), &[], Margin::plain(), Mode::Train).unwrap_err();
    assert!(err.to_string().contains("N = 0"), "{err}");
}

/// Zero input row and zero weight row: the angle is undefined; the documented convention
/// is g = z with the plain gradient, so everything stays finite and equals the plain layer.
#[test]
fn degenerate_rows_are_finite_and_plain() {
    let x = arr2(&[[0.0f32, 0.0], [1.0, 2.0]]);
    let w = arr2(&[[1.0f32, -1.0], [0.0, 0.0]]);
    let labels = [0, 1];
    let g = arr2(&[[1.0f32, 2.0], [3.0, 4.0]]);
    let margin = Margin::lsoftmax(4, 0.0).unwrap();
    let train = forward(x.view(), w.view(), &labels, margin, Mode::Train).unwrap();
    let plain = forward(x.view(), w.view(), &labels, Margin::plain(), Mode::Train).unwrap();
    assert_eq!(train.out, plain.out);
    let (gt, gp) = (
        backward(&train, g.view()).unwrap(),
        backward(&plain, g.view()).unwrap(),
    );
    assert!(gt.dx.iter().chain(gt.dw.iter()).all(|v| v.is_finite()));
    assert_eq!(gt, gp);
}

/// After an inference-mode forward the gradient is the plain fully-connected one, even
/// for a margin that changes the training gradient.
#[test]
fn inference_forward_gives_plain_gradient() {
    let (x, w, labels) = ok_inputs();
    let g = arr2(&[[1.0f32, -2.0, 0.5], [0.25, 1.0, -1.0]]);
    let margin = Margin::lsoftmax(3, 0.0).unwrap();
    let infer = forward(x.view(), w.view(), &labels, margin, Mode::Infer).unwrap();
    let train = forward(x.view(), w.view(), &labels, margin, Mode::Train).unwrap();
    let plain = forward(x.view(), w.view(), &labels, Margin::plain(), Mode::Train).unwrap();
    assert_eq!(infer.out, plain.out);
    let gi = backward(&infer, g.view()).unwrap();
    assert_eq!(gi, backward(&plain, g.view()).unwrap());
    assert_ne!(
        gi,
        backward(&train, g.view()).unwrap(),
        "the margin must change the training gradient here"
    );
}
