// The console's only third-party code, imported by URL from the broker
// (console/console-plugin.ts serves these from node_modules): no bundler, no
// import map (an import map is an inline script, which the CSP forbids).
import { h, render, Fragment } from '/console/vendor/preact.js'
import { useState, useEffect, useRef, useMemo, useCallback } from '/console/vendor/preact-hooks.js'
import htm from '/console/vendor/htm.js'
import uPlot from '/console/vendor/uplot.js'

export const html = htm.bind(h)
export { h, render, Fragment, useState, useEffect, useRef, useMemo, useCallback, uPlot }
