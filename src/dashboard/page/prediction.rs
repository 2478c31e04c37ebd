//! The prediction panel: processing time against output tokens per model, with each
//! model's fitted line (`GET /predict` answers from the same fits).

use maud::{Markup, html};

use super::format::chart_or_error;
use crate::dashboard::View;
use crate::dashboard::charts;

pub(super) fn prediction(view: &View) -> Markup {
    if view.predictions.is_empty() {
        return html! {
            section #prediction {
                h2 { "Predicted time" }
                p.none {
                    "No model has enough calls with prompt and output token counts to fit yet \
                     (10 warm calls each)."
                }
            }
        };
    }
    let chart = charts::prediction_chart(
        "chart-prediction",
        "Processing time against output tokens, with each model's fitted line",
        &view.predictions,
    );
    html! {
        section #prediction {
            h2 { "Predicted time" }
            figure {
                figcaption {
                    "Warm calls (dots) and each model's fitted line at its median prompt; "
                    "GET /api/model-performance/predict?output_tokens=N answers with an interval."
                }
                (chart_or_error(chart))
            }
        }
    }
}
