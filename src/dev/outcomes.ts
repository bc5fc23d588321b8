/** What the callback receiver did with a request (its own module so the dashboard page can type it without Node's types). */
export type ReceiverOutcome =
  | 'pending'
  | 'accepted'
  | 'duplicate'
  | 'injected_failure'
  | 'unauthorized'
  | 'missing_trace_id'
  | 'unsupported_media_type'
  | 'bad_json'
  | 'invalid'
  | 'not_found'
  | 'method_not_allowed'
  | 'too_large';
