// Docs match the code: every setting of the config schema is in the README's table.
import test from 'ava'
import { readFileSync } from 'node:fs'
import { ConfigSchema } from '../broker/config.js'

test('every configuration variable is documented in the README', (t) => {
  const readme = readFileSync('README.md', 'utf8')
  for (const key of Object.keys(ConfigSchema.properties)) t.true(readme.includes('`' + key + '`'), `${key} is in README.md`)
})
