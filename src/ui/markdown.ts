/**
 * Markdown from reports and cycles is text a model, a repository or a test wrote: hostile.
 * Raw HTML in it is shown as text, links keep only http, https, mailto and relative URLs
 * (others become plain text), and the HTML marked makes is then run through sanitize-html
 * with a small allow-list, so what the page inserts can hold no script, handler or style.
 */
import { Marked, type Tokens } from 'marked';
import sanitizeHtml from 'sanitize-html';

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

const SCHEMES = ['http', 'https', 'mailto'];

/** http(s)/mailto or a relative URL; anything with another scheme (javascript:, data:, vbscript:) is refused. */
export function allowedUrl(href: string): boolean {
  // Browsers drop control characters and whitespace inside a scheme ("java\tscript:").
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters hidden in a URL scheme are removed before it is checked
  const compact = href.replace(/[\u0000-\u0020\u007f-\u009f]+/g, '');
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(compact)?.[1];
  if (scheme) return SCHEMES.includes(scheme.toLowerCase());
  return !compact.startsWith('//') && !compact.startsWith('\\\\') && !compact.startsWith('/\\');
}

const marked = new Marked({
  gfm: true,
  renderer: {
    html: (token: Tokens.HTML | Tokens.Tag) => escapeHtml(token.text),
    link(token: Tokens.Link) {
      const text = this.parser.parseInline(token.tokens);
      if (!allowedUrl(token.href)) return text;
      return `<a href="${escapeHtml(token.href)}"${token.title ? ` title="${escapeHtml(token.title)}"` : ''}>${text}</a>`;
    },
    // Images would load from anywhere (tracking, or a URL that acts): show the alt text and the address.
    image: (token: Tokens.Image) => escapeHtml(`[image: ${token.text}] ${token.href}`),
  },
});

const SANITIZE: sanitizeHtml.IOptions = {
  allowedTags: [
    'h1',
    'h2',
    'h3',
    'h4',
    'h5',
    'h6',
    'p',
    'br',
    'hr',
    'ul',
    'ol',
    'li',
    'blockquote',
    'pre',
    'code',
    'em',
    'strong',
    'del',
    'a',
    'table',
    'thead',
    'tbody',
    'tr',
    'th',
    'td',
    'input',
  ],
  allowedAttributes: { a: ['href', 'title', 'rel', 'target'], th: ['align'], td: ['align'], input: ['type', 'checked', 'disabled'], ol: ['start'] },
  allowedSchemes: SCHEMES,
  allowedSchemesByTag: {},
  allowProtocolRelative: false,
  disallowedTagsMode: 'escape',
  exclusiveFilter: (frame) => frame.tag === 'input' && frame.attribs.type !== 'checkbox',
  transformTags: {
    a: (tag, attribs) => ({ tagName: tag, attribs: { ...attribs, rel: 'noopener noreferrer nofollow', target: '_blank' } }),
    input: (tag, attribs) => ({ tagName: tag, attribs: { ...attribs, disabled: '' } }),
  },
};

/** Untrusted Markdown to HTML that is safe to insert into the dashboard. */
export async function renderUntrusted(md: string): Promise<string> {
  return sanitizeHtml(await marked.parse(md), SANITIZE);
}
