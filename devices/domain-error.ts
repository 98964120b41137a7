/** An expected failure of the device domain with a stable, documented code. */
export class DomainError extends Error {
  override name = 'DomainError'
  constructor (readonly code: string, message: string) {
    super(message)
  }
}
