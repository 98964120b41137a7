// Soaks and other long runs (issue 14: "behind a flag, not in the default
// npm test"): their own ava configuration, so the default run neither runs
// nor lists them. `npm run test:soak` runs them.
export default {
  files: ['test/soak/**/*.soak.ts'],
  extensions: { ts: 'module' },
  nodeArguments: ['--import=tsx'],
  timeout: '20m',
  workerThreads: false
}
