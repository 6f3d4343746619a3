"""Help (F1): the local pages under resources/help in a small browser window with Contents, Index
and Search on the left, as the original snap-in's help viewer had."""
from __future__ import annotations

from PySide6.QtCore import QRegularExpression, QUrl
from PySide6.QtGui import QColor, QKeySequence, QShortcut, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSplitter,
    QTabWidget,
    QTextBrowser,
    QTextEdit,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from gui.help_pages import HELP_DIR, START, HelpLibrary, SearchHit

TOPIC_ROLE = 0x0100           # Qt.ItemDataRole.UserRole: the topic an entry opens
HIT_COLOUR = QColor("#ffe680")


def help_url(topic: str) -> QUrl:
    """The page of ``topic`` ("queue", or "winpop#add" for a place in a page); the start page if unknown."""
    name, _, fragment = topic.partition("#")
    page = HELP_DIR / f"{name}.html"
    if not page.exists():
        page, fragment = HELP_DIR / f"{START}.html", ""
    url = QUrl.fromLocalFile(str(page))
    if fragment:
        url.setFragment(fragment)
    return url


class HelpWindow(QDialog):
    """A non-modal help viewer: Contents, Index (keywords) and Search beside the page; links between
    pages, Back and Forward work; external links open nothing."""

    def __init__(self, parent: QWidget | None = None, *, library: HelpLibrary | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("POP3 Service Help")
        self.library = library or HelpLibrary.load()
        self.browser = QTextBrowser()
        self.browser.setOpenExternalLinks(False)
        self.browser.setSearchPaths([str(HELP_DIR)])
        self.browser.sourceChanged.connect(self._page_changed)

        self.side = QTabWidget()
        self.side.addTab(self._contents_page(), "&Contents")
        self.side.addTab(self._index_page(), "I&ndex")
        self.side.addTab(self._search_page(), "&Search")
        self.side.currentChanged.connect(self._tab_changed)
        splitter = QSplitter()
        splitter.addWidget(self.side)
        splitter.addWidget(self.browser)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([270, 590])

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        self.back_button = buttons.addButton("&Back", QDialogButtonBox.ButtonRole.ActionRole)
        self.back_button.clicked.connect(self.browser.backward)
        self.forward_button = buttons.addButton("&Forward", QDialogButtonBox.ButtonRole.ActionRole)
        self.forward_button.clicked.connect(self.browser.forward)
        self.back_button.setEnabled(False)
        self.forward_button.setEnabled(False)
        self.browser.backwardAvailable.connect(self.back_button.setEnabled)
        self.browser.forwardAvailable.connect(self.forward_button.setEnabled)
        QShortcut(QKeySequence.StandardKey.Back, self, self.browser.backward)        # Alt+Left
        QShortcut(QKeySequence.StandardKey.Forward, self, self.browser.forward)      # Alt+Right
        layout = QVBoxLayout(self)
        layout.addWidget(splitter, 1)
        layout.addWidget(buttons)
        self.resize(880, 600)

    # -- the three panes -------------------------------------------------------------------
    def _contents_page(self) -> QWidget:
        self.contents = QListWidget()
        self.contents.setAccessibleName("Contents")
        for page in self.library.contents():
            item = QListWidgetItem(page.title)
            item.setData(TOPIC_ROLE, page.topic)
            self.contents.addItem(item)
        self.contents.itemActivated.connect(lambda item: self.open_topic(item.data(TOPIC_ROLE)))
        self.contents.itemClicked.connect(lambda item: self.open_topic(item.data(TOPIC_ROLE)))
        return self.contents

    def _index_page(self) -> QWidget:
        page = QWidget()
        label = QLabel("Type a &keyword:")
        self.index_filter = QLineEdit()
        self.index_filter.setClearButtonEnabled(True)
        label.setBuddy(self.index_filter)
        self.index_list = QTreeWidget()
        self.index_list.setHeaderHidden(True)
        self.index_list.setAccessibleName("Index")
        self.index_filter.textChanged.connect(self.fill_index)
        self.index_filter.returnPressed.connect(self._open_first_keyword)
        self.index_list.itemActivated.connect(self._keyword_chosen)
        self.index_list.itemClicked.connect(self._keyword_chosen)
        layout = QVBoxLayout(page)
        layout.addWidget(label)
        layout.addWidget(self.index_filter)
        layout.addWidget(self.index_list, 1)
        self.fill_index("")
        return page

    def _search_page(self) -> QWidget:
        page = QWidget()
        label = QLabel("Words to &look for:")
        self.search_box = QLineEdit()
        self.search_box.setClearButtonEnabled(True)
        label.setBuddy(self.search_box)
        self.search_button = QPushButton("List &Topics")
        self.search_button.clicked.connect(self.run_search)
        self.search_box.returnPressed.connect(self.run_search)
        self.search_note = QLabel()
        self.search_note.setWordWrap(True)
        self.search_results = QListWidget()
        self.search_results.setAccessibleName("Pages found")
        self.search_results.itemActivated.connect(self._hit_chosen)
        self.search_results.itemClicked.connect(self._hit_chosen)
        row = QHBoxLayout()
        row.addWidget(self.search_box, 1)
        row.addWidget(self.search_button)
        layout = QVBoxLayout(page)
        layout.addWidget(label)
        layout.addLayout(row)
        layout.addWidget(self.search_note)
        layout.addWidget(self.search_results, 1)
        return page

    def _tab_changed(self, index: int) -> None:
        """The tab's own field takes the keyboard, so Alt+N then typing filters the index."""
        widget = {0: self.contents, 1: self.index_filter, 2: self.search_box}.get(index)
        if widget is not None:
            widget.setFocus()

    # -- the index -------------------------------------------------------------------------
    def fill_index(self, text: str) -> None:
        """The keywords containing ``text``; a keyword of several pages lists them under it."""
        self.index_list.clear()
        for keyword, pages in self.library.index(text):
            item = QTreeWidgetItem([keyword])
            if len(pages) == 1:
                item.setData(0, TOPIC_ROLE, pages[0].topic)
                item.setToolTip(0, pages[0].title)
            else:
                for page in pages:
                    child = QTreeWidgetItem([page.title])
                    child.setData(0, TOPIC_ROLE, page.topic)
                    item.addChild(child)
            self.index_list.addTopLevelItem(item)
        first = self.index_list.topLevelItem(0)
        if first is not None:
            self.index_list.setCurrentItem(first)

    def index_entries(self) -> list[str]:
        """The keywords the index shows now."""
        items = (self.index_list.topLevelItem(i) for i in range(self.index_list.topLevelItemCount()))
        return [item.text(0) for item in items if item is not None]

    def _keyword_chosen(self, item: QTreeWidgetItem) -> None:
        topic = item.data(0, TOPIC_ROLE)
        if topic:
            self.open_topic(str(topic))
        else:
            item.setExpanded(True)

    def _open_first_keyword(self) -> None:
        item = self.index_list.currentItem()
        if item is not None:
            self._keyword_chosen(item)

    # -- search ----------------------------------------------------------------------------
    def run_search(self) -> list[SearchHit]:
        """List the pages holding every word typed, best first; open the best one."""
        hits = self.library.search(self.search_box.text())
        self.search_results.clear()
        for hit in hits:
            item = QListWidgetItem(hit.title)
            item.setData(TOPIC_ROLE, hit.topic)
            item.setData(TOPIC_ROLE + 1, list(hit.terms))
            self.search_results.addItem(item)
        if not self.search_box.text().strip():
            self.search_note.setText("Type one or more words.")
        elif not hits:
            self.search_note.setText("No page holds all of these words.")
        else:
            self.search_note.setText(f"{len(hits)} page{'s' if len(hits) != 1 else ''} found, best first.")
            self.search_results.setCurrentRow(0)
            self.open_topic(hits[0].topic, mark=hits[0].terms)
        return hits

    def _hit_chosen(self, item: QListWidgetItem) -> None:
        self.open_topic(str(item.data(TOPIC_ROLE)), mark=tuple(item.data(TOPIC_ROLE + 1) or ()))

    def mark(self, terms: tuple[str, ...]) -> int:
        """Highlight every place the search ``terms`` occur in the page and scroll to the first."""
        colour = QTextCharFormat()
        colour.setBackground(HIT_COLOUR)
        document = self.browser.document()
        found = []
        for term in terms:
            word = QRegularExpression.escape(term)
            pattern = f"\\b{word}" if len(term) >= 4 else f"\\b{word}\\b"   # as gui.help_pages.matches
            cursor = document.find(_regex(pattern), 0)
            while not cursor.isNull():
                selection = QTextEdit.ExtraSelection()
                selection.cursor = cursor
                selection.format = colour
                found.append(selection)
                cursor = document.find(_regex(pattern), cursor)
        self.browser.setExtraSelections(found)
        if found:
            first = QTextCursor(min((s.cursor for s in found), key=lambda c: c.selectionStart()))
            first.setPosition(first.selectionStart())
            self.browser.setTextCursor(first)
            self.browser.ensureCursorVisible()
        return len(found)

    # -- pages -----------------------------------------------------------------------------
    def open_topic(self, topic: str, *, mark: tuple[str, ...] = ()) -> None:
        """Show ``topic``'s page (in the history, so Back returns), its search words marked."""
        self.browser.setSource(help_url(topic))
        if mark:
            self.mark(mark)

    def show_topic(self, topic: str) -> None:
        """F1: the window on ``topic``'s page, brought to the front."""
        self.open_topic(topic)
        self.show()
        self.raise_()
        self.activateWindow()

    def _page_changed(self, url: QUrl) -> None:
        """A new page (a link, Back, Forward, the panes): no old marks; the contents follow it."""
        self.browser.setExtraSelections([])
        topic = url.fileName().removesuffix(".html")
        page = self.library.pages.get(topic)
        self.setWindowTitle(f"POP3 Service Help - {page.title}" if page else "POP3 Service Help")
        for row in range(self.contents.count()):
            if self.contents.item(row).data(TOPIC_ROLE) == topic:
                self.contents.blockSignals(True)
                self.contents.setCurrentRow(row)
                self.contents.blockSignals(False)
                break

    @property
    def topic(self) -> str:
        return self.browser.source().fileName().removesuffix(".html")


def _regex(pattern: str) -> QRegularExpression:
    """A case-insensitive QRegularExpression for QTextDocument.find."""
    return QRegularExpression(pattern, QRegularExpression.PatternOption.CaseInsensitiveOption)
