"""Pure text tools the turn applies to every answer, whatever the channel.

The agent answers in Markdown. WhatsApp has its own, smaller formatting language
(``*bold*``, ``_italic_``, ``~strike~``, ```` ```mono``` ````, `` `code` ``, ``> quote``), a
text-to-speech voice reads markup characters aloud, and a WhatsApp message has a length limit.
So:

- ``to_whatsapp`` rewrites Markdown into WhatsApp formatting (``whatsapp.py``),
- ``for_speech`` strips every kind of formatting for TTS (``speech.py``),
- ``split_message`` cuts a long answer into messages that fit the channel's limit
  (``split.py``).

All three are total: ``to_whatsapp`` and ``for_speech`` never raise, whatever the input.
``markdown.py`` is what the first two share: reading the agent's Markdown.
"""

from daemon.text.speech import SPOKEN_LINK as SPOKEN_LINK
from daemon.text.speech import for_speech as for_speech
from daemon.text.split import split_message as split_message
from daemon.text.whatsapp import to_whatsapp as to_whatsapp
