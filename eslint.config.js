// Lint and format rules, run by `npm test` (npm run lint): neostandard (the
// "standard" style the fastify and aedes projects use) with its TypeScript
// support, plus typescript-eslint's recommended rules.
import neostandard from 'neostandard'
import tseslint from 'typescript-eslint'
import globals from 'globals'

export default [
  { ignores: ['dist/**', 'node_modules/**', 'results/**', 'helm/**', '.data/**'] },
  ...neostandard({ ts: true }),
  ...tseslint.configs.recommended,
  {
    rules: {
      // Unused arguments keep a callback's documented shape; prefix with _ to say so.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      // `void promise` marks a promise deliberately not awaited (a statement).
      'no-void': ['error', { allowAsStatement: true }],
      // Loops over a flag that a callback or a timer flips (`while (!stop)`)
      // are how load loops stop; the rule cannot see the closure.
      'no-unmodified-loop-condition': 'off',
      // A TypeBox schema and its Static<> type share a name on purpose.
      '@typescript-eslint/no-redeclare': 'off',
      // Late-bound references (assigned once start-up reaches them, read by
      // closures created before) stay `let`.
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }]
    }
  },
  {
    // The web console's client: browser ES modules; htm templates nest
    // conditional markup inside ternaries, which one-line layouts read best.
    files: ['console/app/**/*.js'],
    languageOptions: { globals: globals.browser },
    rules: {
      '@stylistic/multiline-ternary': 'off',
      'new-cap': ['error', { newIsCapExceptions: ['uPlot'] }]
    }
  }
]
