"""SVG plots drawn on the server: lines with an interval band and markers, stacked and grouped bars. Each chart
carries a `<title>`, an `aria-label` and its data as a table, and uses the Okabe-Ito colour-blind-safe palette."""
